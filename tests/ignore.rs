//! Ignored voxels (issue 19 item 3): a mask value marking voxels that count
//! nowhere. Where cropping them away is possible (identity transforms, an
//! ignored border strip) every result equals the result on the cropped
//! images; otherwise (a distance transform) an ignored voxel with an
//! extreme score changes nothing, checked against a direct computation
//! over the voxels that are not ignored.

use confseg::calibrate::ImageStatistics;
use confseg::evaluate::{Geometry, Method, Pool, Splits, Validation};
use confseg::levels::ModeKind;
use confseg::mask::{Coding, Labels, Voxel};
use confseg::risk::Risk;
use confseg::synthetic::Synthetic;
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{Alpha, Calibrator, Identity, Levels, Mode, ScoreTransform, Spacing, Transform};
use ndarray::{s, Array2, Array3, Axis, Zip};

const N: usize = 60;
const H: usize = 18;
const W: usize = 22;
const STRIP: usize = 5;

/// Synthetic images with an ignored strip of `STRIP` columns on the left
/// (mask value 255, scores anything: here extreme), and the same images
/// cropped to the other columns.
fn strip_and_cropped() -> (Array3<f64>, Array3<u8>, Array3<f64>, Array3<u8>) {
    let (scores, masks) = Synthetic::new([H, W - STRIP]).seed(11).stack(0..N);
    let masks = masks.mapv(u8::from);
    let mut s = Array3::<f64>::zeros((N, H, W));
    let mut m = Array3::<u8>::from_elem((N, H, W), 255);
    s.slice_mut(s![.., .., STRIP..]).assign(&scores);
    m.slice_mut(s![.., .., STRIP..]).assign(&masks);
    // extreme scores on the ignored strip: counted, they would decide every statistic
    for (k, v) in s.slice_mut(s![.., .., ..STRIP]).iter_mut().enumerate() {
        *v = if k % 2 == 0 { 1e6 } else { -1e6 };
    }
    (s, m, scores, masks)
}

fn coded(m: &Array3<u8>) -> Array3<Voxel> {
    Coding::new(Labels::Binary, Some(255)).unwrap().read(m).unwrap()
}

#[test]
fn a_mask_value_is_read_as_ignored_and_may_not_collide_with_the_labels() {
    let c = Coding::new(Labels::select([1, 2]).unwrap(), Some(255)).unwrap();
    let v = c.read(&ndarray::array![0i32, 1, 2, 3, 255]).unwrap();
    assert_eq!(
        v.to_vec(),
        [Voxel::Background, Voxel::Object, Voxel::Object, Voxel::Background, Voxel::Ignored]
    );
    for (labels, k) in [(Labels::Binary, 1), (Labels::Binary, 0), (Labels::select([1, 255]).unwrap(), 255)] {
        let e = Coding::new(labels, Some(k)).unwrap_err().to_string();
        assert!(e.contains("ignore label") && e.contains(&k.to_string()), "{e}");
    }
    // a binary coding still refuses other values, naming the voxel
    let e = Coding::new(Labels::Binary, Some(255)).unwrap().read(&ndarray::array![[0u8, 1], [7, 255]]);
    assert!(e.unwrap_err().to_string().contains("[1, 0]"));
    // without the ignore value, 255 is refused with a hint naming the option
    let e = Calibrator::new(Identity, Identity)
        .statistics(&Array2::<f64>::zeros((2, 2)), &ndarray::array![[0u8, 255], [1, 0]])
        .unwrap_err()
        .to_string();
    assert!(e.contains("--ignore-label 255"), "{e}");
}

#[test]
fn statistics_and_thresholds_equal_those_of_the_cropped_images() {
    let (s, m, sc, mc) = strip_and_cropped();
    let v = coded(&m);
    let tolerances = [
        Tolerances::NONE,
        Tolerances::new("3vox".parse().unwrap(), "0.1".parse().unwrap()),
        Tolerances::new("5%".parse().unwrap(), Tolerance::Voxels(2)),
    ];
    for t in tolerances {
        let c = Calibrator::new(Identity, Identity).with_tolerances(t);
        let cal = c.calibrate_stack(&s, &v).unwrap();
        let want = c.calibrate_stack(&sc, &mc).unwrap();
        assert_eq!((cal.tau(), cal.gamma()), (want.tau(), want.gamma()), "{t:?}");
        // counted as background, the strip's 1e6 decides tau (the test sees the option)
        let as_background = m.mapv(|x| u8::from(x == 1));
        let wrong = c.calibrate_stack(&s, &as_background).unwrap();
        assert!(wrong.tau().iter().all(|&tau| tau >= 1e6 - 1.0), "{t:?}");
        for mode in [Mode::max(Alpha::new(0.1).unwrap()), Mode::marginal(Alpha::new(0.2).unwrap())] {
            let a = c.fit(&cal, mode).unwrap();
            let b = c.fit(&want, mode).unwrap();
            assert_eq!(a.thresholds(), b.thresholds());
        }
    }
    // one image at a time, and the chunked reader's fold, agree
    for i in 0..5 {
        let c = Calibrator::new(Identity, Identity);
        let one = c.statistics(&s.index_axis(Axis(0), i), &v.index_axis(Axis(0), i)).unwrap();
        let cropped = c.statistics(&sc.index_axis(Axis(0), i), &mc.index_axis(Axis(0), i)).unwrap();
        assert_eq!(one, cropped);
    }
}

#[test]
fn risk_losses_leave_ignored_voxels_out() {
    let (s, m, sc, mc) = strip_and_cropped();
    let v = coded(&m);
    let c = Calibrator::new(Identity, Identity);
    for risk in [Risk::Recall, Risk::Precision] {
        for i in 0..N {
            let (mut o, mut b) =
                c.risk_scores(risk, &s.index_axis(Axis(0), i), &v.index_axis(Axis(0), i)).unwrap();
            let (mut oc, mut bc) =
                c.risk_scores(risk, &sc.index_axis(Axis(0), i), &mc.index_axis(Axis(0), i)).unwrap();
            for x in [&mut o, &mut b, &mut oc, &mut bc] {
                x.sort_unstable_by(f64::total_cmp);
            }
            assert_eq!((o, b), (oc, bc), "{risk:?} image {i}");
        }
    }
}

#[test]
fn validation_coverage_and_set_sizes_equal_those_of_the_cropped_images() {
    let (s, m, sc, mc) = strip_and_cropped();
    let v = coded(&m);
    let c = Calibrator::new(Identity, Identity);
    let pool = Pool::new(&c, &s, &v, 0.0).unwrap();
    let cropped = Pool::new(&c, &sc, &mc, 0.0).unwrap();
    let validation = Validation::new(
        vec![Alpha::new(0.1).unwrap(), Alpha::new(0.3).unwrap()],
        Splits::new(30, 200, 5).unwrap(),
    )
    .with_geometry(Geometry::FirstSplits(4));
    let levels = Levels { mode: ModeKind::Max, ..Levels::default() };
    let methods = [Method::Conformal(levels)];
    let a = validation.run(&pool, &methods).unwrap();
    let b = validation.run(&cropped, &methods).unwrap();
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.joint_coverage, y.joint_coverage);
        assert_eq!(x.inner_coverage, y.inner_coverage);
        assert_eq!(x.outer_coverage, y.outer_coverage);
        let (e, f) = (&x.efficiency, &y.efficiency);
        assert_eq!(
            (
                e.inner_share,
                e.outer_share,
                e.inner_size_ratio,
                e.outer_size_ratio,
                e.under_covered,
                e.over_covered
            ),
            (
                f.inner_share,
                f.outer_share,
                f.inner_size_ratio,
                f.outer_size_ratio,
                f.under_covered,
                f.over_covered
            )
        );
        assert!(e.outer_share > 0.0 && e.outer_share < 1.0);
        // the geometry of the sets: measured without the ignored voxels
        // (the strip's extreme scores would otherwise join the sets)
        let geometry = |e: &confseg::evaluate::Efficiency| {
            [
                e.inner_diameter_ratio,
                e.outer_diameter_ratio,
                e.inner_hausdorff,
                e.outer_hausdorff,
                e.band_width_mean,
                e.band_width_max,
                e.band_width_mean_voxels,
                e.band_width_undefined,
            ]
        };
        assert_eq!(geometry(e), geometry(f), "{}", x.alpha);
        assert!(e.band_width_max.is_some_and(|w| w > 0.0) && e.outer_hausdorff.is_some());
    }
}

#[test]
fn coverage_events_and_measures_of_sets_skip_ignored_voxels() {
    let (s, m, sc, mc) = strip_and_cropped();
    let v = coded(&m);
    let c = Calibrator::new(Identity, Identity);
    let sets = c.fit(&c.calibrate_stack(&sc, &mc).unwrap(), Mode::max(Alpha::new(0.2).unwrap())).unwrap();
    let t = Tolerances::new("2vox".parse().unwrap(), "0.1".parse().unwrap());
    for i in 0..N {
        let full = sets.predict(&s.index_axis(Axis(0), i)).unwrap();
        let crop = sets.predict(&sc.index_axis(Axis(0), i)).unwrap();
        let (y, yc) = (v.index_axis(Axis(0), i), mc.index_axis(Axis(0), i));
        assert_eq!(full.coverage(&y).unwrap(), crop.coverage(&yc).unwrap());
        assert_eq!(full.events(&y, &t, 1.0).unwrap(), crop.events(&yc, &t, 1.0).unwrap());
        let a = full.measures_within(&Spacing::unit(), &y).unwrap();
        let b = crop.measures(&Spacing::unit()).unwrap();
        assert_eq!(
            (a.voxels, a.inner_voxels, a.outer_voxels, a.band_voxels),
            (b.voxels, b.inner_voxels, b.outer_voxels, b.band_voxels)
        );
        assert_eq!(a.whole_outer(), b.whole_outer());
        assert_eq!(a.band_width, b.band_width, "image {i}");
    }
    // the strip's +1e6 voxels are in the inner set: counted as background, inner coverage fails
    let full = sets.predict(&s.index_axis(Axis(0), 0)).unwrap();
    let as_background = m.index_axis(Axis(0), 0).mapv(|x| u8::from(x == 1));
    assert!(!full.coverage(&as_background).unwrap().inner);
}

/// The statistics computed directly: max of `f_I` over background voxels
/// that are not ignored, max of `-f_O` over object voxels.
fn direct(fi: &Array2<f64>, fo: &Array2<f64>, m: &Array2<Voxel>) -> ImageStatistics {
    let (mut tau, mut gamma) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    Zip::from(fi).and(fo).and(m).for_each(|&a, &b, &y| match y {
        Voxel::Background => tau = tau.max(a),
        Voxel::Object => gamma = gamma.max(-b),
        Voxel::Ignored => {}
    });
    ImageStatistics { tau, gamma }
}

#[test]
fn with_a_distance_transform_an_ignored_voxel_with_an_extreme_score_changes_nothing() {
    let (scores, masks) = Synthetic::new([20, 20]).seed(3).stack(0..20);
    let fo: ScoreTransform = "distance".parse().unwrap();
    let c = Calibrator::new(ScoreTransform::Identity, fo.clone());
    for i in 0..20 {
        let mut s = scores.index_axis(Axis(0), i).to_owned();
        let mut y = masks.index_axis(Axis(0), i).mapv(|b| if b { Voxel::Object } else { Voxel::Background });
        // an ignored background voxel inside the predicted mask, given an extreme score:
        // the predicted mask (and so the distance transform) is unchanged
        let at =
            s.indexed_iter().filter(|(p, &x)| x > 0.0 && y[*p] == Voxel::Background).map(|(p, _)| p).next();
        let at = at.unwrap_or((0, 0));
        s[at] = 1e9;
        y[at] = Voxel::Ignored;
        let fi = s.clone();
        let fov: Array2<f64> = fo.apply(&s, &Spacing::unit()).unwrap().into_owned();
        let got = c.statistics(&s, &y).unwrap();
        assert_eq!(got, direct(&fi, &fov, &y), "image {i}");
        assert!(got.tau < 1e9);
        // the same voxel with an ordinary score: same statistics
        let mut s2 = s.clone();
        s2[at] = 1.0;
        if scores.index_axis(Axis(0), i)[at] > 0.0 {
            assert_eq!(c.statistics(&s2, &y).unwrap(), got, "image {i}");
        }
        // an ignored object voxel with the most negative outer score: gamma unchanged
        let mut y3 = y.clone();
        if let Some(p) = y.indexed_iter().find(|(_, &v)| v == Voxel::Object).map(|(p, _)| p) {
            let worst = fov[p];
            y3[p] = Voxel::Ignored;
            let st = c.statistics(&s, &y3).unwrap();
            assert_eq!(st, direct(&fi, &fov, &y3));
            assert!(st.gamma <= got.gamma || -worst < got.gamma);
        }
    }
}

#[test]
fn a_label_map_with_an_ignore_label_ignores_its_voxels_in_every_structure() {
    use confseg::calibrate::{StructureCalibration, StructureCalibrator};
    use confseg::mask::Structure;
    use confseg::transform::StructureScores;
    let structures: Vec<Structure> = vec!["WT=1,2".parse().unwrap(), "CORE=2".parse().unwrap()];
    let sc = StructureCalibrator::new(
        Calibrator::new(Identity, Identity),
        structures.clone(),
        StructureScores::Channels { axis: 0 },
    )
    .unwrap();
    assert!(sc.clone().with_ignore_label(Some(2)).is_err());
    let sc = sc.with_ignore_label(Some(9)).unwrap();
    let out = Array3::from_shape_fn((2, 6, 6), |(k, y, x)| (k + y * 6 + x) as f64 / 10.0 - 1.0);
    let labels = Array2::from_shape_fn((6, 6), |(y, x)| {
        if x == 0 {
            9i32
        } else if y < 2 {
            2
        } else if y < 4 {
            1
        } else {
            0
        }
    });
    let maps = sc.maps(&out, &labels).unwrap();
    for (k, (score, mask)) in maps.iter().enumerate() {
        assert!(mask.column(0).iter().all(|&v| v == Voxel::Ignored));
        let st = sc.calibrator().statistics(score, mask).unwrap();
        let cropped_mask = mask.slice(s![.., 1..]).mapv(|v| u8::from(v == Voxel::Object));
        let want = sc.calibrator().statistics(&score.slice(s![.., 1..]).to_owned(), &cropped_mask).unwrap();
        assert_eq!(st, want, "structure {k}");
    }
    let mut cal = StructureCalibration::new(&structures);
    sc.observe(&mut cal, &out, None, &labels).unwrap();
    assert_eq!(cal.len(), 1);
}
