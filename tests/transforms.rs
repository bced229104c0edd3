//! The spatial transforms against slow, obviously correct references:
//! brute force over all boundary midpoints / all voxel pairs, direct n-D
//! convolution with an independently written boundary extension,
//! exhaustive box search over flood-filled components, and scipy-style
//! dilation and erosion iterated until nothing changes. Random small masks
//! in 1-D to 4-D (zero-size axes included) with random anisotropic spacing.

mod common;

use confseg::calibrate::ImageStatistics;
use confseg::mask::Voxel;
use confseg::tolerance::{Share, Tolerance, Tolerances, Volume};
use confseg::transform::{
    component_boxes, BoundaryMode, BoxKind, BoxScores, BoxShape, Connectivity, DistanceConvention, Footprint,
    Morphological, Units,
};
use confseg::{
    Calibrator, GaussianSmoothing, Identity, Metric, ScoreTransform, SignedDistance, Spacing, Transform,
};
use ndarray::{Array2, ArrayD, Dimension, IxDyn};
use proptest::prelude::*;

// ---------------------------------------------------------------- strategies

/// A shape of 1 to 3 axes of length 0..=7, or 4 axes of length 0..=3.
fn small_shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![4 => common::shape(3, 7), 1 => prop::collection::vec(0..=3usize, 4)]
}

/// A mask of the given shape with a random density (sparse to full).
fn mask_of(shape: Vec<usize>) -> impl Strategy<Value = ArrayD<bool>> {
    let len: usize = shape.iter().product();
    prop_oneof![Just(0.0), 0.02..0.98f64, Just(1.0)].prop_flat_map(move |p| {
        let shape = shape.clone();
        prop::collection::vec(prop::bool::weighted(p), len)
            .prop_map(move |v| ArrayD::from_shape_vec(IxDyn(&shape), v).expect("length matches shape"))
    })
}

/// Unit spacing (exact ties) or random anisotropic spacing in [0.3, 3].
fn spacing_of(ndim: usize) -> impl Strategy<Value = Vec<f64>> {
    prop_oneof![Just(vec![1.0; ndim]), prop::collection::vec(0.3..3.0f64, ndim)]
}

fn mask_and_spacing() -> impl Strategy<Value = (ArrayD<bool>, Vec<f64>)> {
    small_shape().prop_flat_map(|s| (mask_of(s.clone()), spacing_of(s.len())))
}

fn metric() -> impl Strategy<Value = Metric> {
    prop_oneof![Just(Metric::Euclidean), Just(Metric::Chessboard), Just(Metric::CityBlock)]
}

// ---------------------------------------------------------------- references

fn rho(metric: Metric, a: &[f64], b: &[f64], spacing: &[f64]) -> f64 {
    let d = a.iter().zip(b).zip(spacing).map(|((x, y), s)| (x - y).abs() * s);
    match metric {
        Metric::Euclidean => d.map(|x| x * x).sum::<f64>().sqrt(),
        Metric::Chessboard => d.fold(0.0, f64::max),
        Metric::CityBlock => d.sum(),
    }
}

fn voxels(shape: &[usize]) -> Vec<Vec<usize>> {
    let mut out = vec![vec![]];
    for &n in shape {
        out = out.into_iter().flat_map(|v| (0..n).map(move |i| [v.clone(), vec![i]].concat())).collect();
    }
    out
}

fn as_f64(v: &[usize]) -> Vec<f64> {
    v.iter().map(|&i| i as f64).collect()
}

/// METHOD.md §5 literally: all midpoints between face-adjacent voxels on
/// different sides, then the signed minimum over them.
fn brute_midpoint(mask: &ArrayD<bool>, metric: Metric, spacing: &[f64]) -> ArrayD<f64> {
    let mids = midpoints(mask);
    ArrayD::from_shape_fn(mask.raw_dim(), |ix| brute_midpoint_at(mask, &mids, metric, spacing, ix.slice()))
}

/// The midpoints between face-adjacent voxels on different sides.
fn midpoints(mask: &ArrayD<bool>) -> Vec<Vec<f64>> {
    let shape = mask.shape().to_vec();
    let mut mids: Vec<Vec<f64>> = Vec::new();
    for v in voxels(&shape) {
        for k in 0..shape.len() {
            if v[k] + 1 < shape[k] {
                let mut w = v.clone();
                w[k] += 1;
                if mask[IxDyn(&v)] != mask[IxDyn(&w)] {
                    let mut m = as_f64(&v);
                    m[k] += 0.5;
                    mids.push(m);
                }
            }
        }
    }
    mids
}

/// The signed distance of voxel `ix` to the nearest of `mids`.
fn brute_midpoint_at(
    mask: &ArrayD<bool>,
    mids: &[Vec<f64>],
    metric: Metric,
    spacing: &[f64],
    ix: &[usize],
) -> f64 {
    let v = as_f64(ix);
    let d = mids.iter().map(|m| rho(metric, &v, m, spacing)).fold(f64::INFINITY, f64::min);
    if mask[IxDyn(ix)] {
        d
    } else {
        -d
    }
}

/// scipy's convention: distance to the nearest voxel centre on the other side.
fn brute_centre(mask: &ArrayD<bool>, metric: Metric, spacing: &[f64]) -> ArrayD<f64> {
    let shape = mask.shape().to_vec();
    let all = voxels(&shape);
    ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
        let inside = mask[&ix];
        let v = as_f64(ix.slice());
        let d = all
            .iter()
            .filter(|w| mask[IxDyn(w)] != inside)
            .map(|w| rho(metric, &v, &as_f64(w), spacing))
            .fold(f64::INFINITY, f64::min);
        if inside {
            d
        } else {
            -d
        }
    })
}

fn assert_close(got: &ArrayD<f64>, want: &ArrayD<f64>, rel: f64) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape());
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        if w.is_infinite() {
            prop_assert_eq!(g, w, "voxel {}", i);
        } else {
            prop_assert!((g - w).abs() <= rel * w.abs().max(1.0), "voxel {}: got {}, want {}", i, g, w);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- distances

proptest! {
    #![proptest_config(ProptestConfig::with_cases(192))]

    #[test]
    fn midpoint_distance_matches_brute_force((mask, sp) in mask_and_spacing(), metric in metric()) {
        let want = brute_midpoint(&mask, metric, &sp);
        let spacing = Spacing::new(sp.clone()).unwrap();
        let t = SignedDistance::new(metric);
        let got: ArrayD<f64> = t.of_mask(&mask, &spacing).unwrap();
        assert_close(&got, &want, 1e-9)?;
        // f32 output, and the transform on scores (mask = scores > t).
        let scores = mask.mapv(|m| if m { 0.75f32 } else { 0.25 });
        let t = t.with_mask_threshold(0.5).unwrap();
        let got32 = t.apply(&scores, &spacing).unwrap().mapv(f64::from);
        assert_close(&got32, &want, 1e-5)?;
    }

    #[test]
    fn voxel_centre_distance_matches_brute_force((mask, sp) in mask_and_spacing(), metric in metric()) {
        let want = brute_centre(&mask, metric, &sp);
        let t = SignedDistance::new(metric).with_convention(DistanceConvention::VoxelCentre);
        let got: ArrayD<f64> = t.of_mask(&mask, &Spacing::new(sp).unwrap()).unwrap();
        assert_close(&got, &want, 1e-9)?;
    }

    #[test]
    fn strided_views_give_the_same_distances((mask, sp) in mask_and_spacing()) {
        // A transposed (non-standard layout) input is read in logical order.
        let t = SignedDistance::new(Metric::Euclidean);
        let spacing = Spacing::new(sp.iter().rev().copied().collect()).unwrap();
        let rev = mask.clone().reversed_axes();
        let got: ArrayD<f64> = t.of_mask(&rev, &spacing).unwrap();
        let want = brute_midpoint(&rev.as_standard_layout().to_owned(), Metric::Euclidean, spacing.as_slice().unwrap());
        assert_close(&got, &want, 1e-9)?;
    }
}

#[test]
fn distance_edge_cases() {
    let unit = Spacing::unit();
    for metric in [Metric::Euclidean, Metric::Chessboard, Metric::CityBlock] {
        for conv in [DistanceConvention::Midpoint, DistanceConvention::VoxelCentre] {
            let t = SignedDistance::new(metric).with_convention(conv);
            // zero-size axes: an empty result of the same shape, no panic
            for shape in [vec![0], vec![3, 0], vec![0, 4, 2]] {
                let m = ArrayD::from_elem(IxDyn(&shape), true);
                let d: ArrayD<f32> = t.of_mask(&m, &unit).unwrap();
                assert_eq!(d.shape(), &shape[..]);
            }
            // empty / full masks: -inf / +inf everywhere
            let d: ArrayD<f64> = t.of_mask(&ArrayD::from_elem(IxDyn(&[2, 3, 4]), false), &unit).unwrap();
            assert!(d.iter().all(|&x| x == f64::NEG_INFINITY));
            let d: ArrayD<f64> = t.of_mask(&ArrayD::from_elem(IxDyn(&[5]), true), &unit).unwrap();
            assert!(d.iter().all(|&x| x == f64::INFINITY));
            // a 0-D image is one voxel with no neighbours
            let d: ArrayD<f64> = t.of_mask(&ArrayD::from_elem(IxDyn(&[]), true), &unit).unwrap();
            assert_eq!(d[IxDyn(&[])], f64::INFINITY);
        }
    }
    // single voxel touching the border of a non-square image
    let mut m = Array2::from_elem((3, 7), false);
    m[[0, 6]] = true;
    let d: Array2<f64> = SignedDistance::new(Metric::Euclidean).of_mask(&m, &unit).unwrap();
    assert_eq!(d[[0, 6]], 0.5);
    assert_eq!(d[[2, 6]], -1.5);
    assert!((d[[2, 0]] - -(2.0f64.powi(2) + 5.5f64.powi(2)).sqrt()).abs() < 1e-12);
    // spacing of the wrong length and non-binary masks are errors
    let s = Spacing::new(vec![1.0, 2.0, 3.0]).unwrap();
    assert!(SignedDistance::default().of_mask::<f64, _, _>(&m, &s).is_err());
    let bad = Array2::from_elem((2, 2), 2u8);
    assert!(SignedDistance::default().of_mask::<f64, _, _>(&bad, &unit).is_err());
}

#[test]
fn metrics_and_conventions_relate_as_documented() {
    // City-block, unit spacing: centre convention = midpoint convention ± 1/2.
    let m = ArrayD::from_shape_vec(
        IxDyn(&[4, 5]),
        vec![0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
            .into_iter()
            .map(|x| x == 1)
            .collect(),
    )
    .unwrap();
    let unit = Spacing::unit();
    let mid: ArrayD<f64> = SignedDistance::new(Metric::CityBlock).of_mask(&m, &unit).unwrap();
    let cen: ArrayD<f64> = SignedDistance::new(Metric::CityBlock)
        .with_convention(DistanceConvention::VoxelCentre)
        .of_mask(&m, &unit)
        .unwrap();
    for (&a, &b) in mid.iter().zip(cen.iter()) {
        assert_eq!(b, a + 0.5 * a.signum());
    }
}

// ---------------------------------------------------------------- smoothing

/// Boundary extension written independently of the crate: reflect step by
/// step, as scipy's line buffer does.
fn extend(mut p: isize, n: usize, mode: BoundaryMode) -> Option<usize> {
    let n = n as isize;
    loop {
        if (0..n).contains(&p) {
            return Some(p as usize);
        }
        p = match mode {
            BoundaryMode::Reflect if p < 0 => -p - 1,
            BoundaryMode::Reflect => 2 * n - 1 - p,
            BoundaryMode::Mirror if n == 1 => 0,
            BoundaryMode::Mirror if p < 0 => -p,
            BoundaryMode::Mirror => 2 * n - 2 - p,
            BoundaryMode::Nearest => p.clamp(0, n - 1),
            BoundaryMode::Wrap if p < 0 => p + n,
            BoundaryMode::Wrap => p - n,
            _ => return None,
        };
    }
}

/// Direct n-D correlation with the product kernel.
fn direct_gaussian(x: &ArrayD<f64>, sigmas: &[f64], truncate: f64, mode: BoundaryMode) -> ArrayD<f64> {
    let kernels: Vec<Vec<f64>> = sigmas
        .iter()
        .map(|&s| {
            let r = (truncate * s + 0.5) as i64;
            let w: Vec<f64> = (-r..=r).map(|i| (-(i * i) as f64 / (2.0 * s * s)).exp()).collect();
            let total: f64 = w.iter().sum();
            w.into_iter().map(|v| v / total).collect()
        })
        .collect();
    let cval = if let BoundaryMode::Constant(c) = mode { c } else { 0.0 };
    let offsets = voxels(&kernels.iter().map(Vec::len).collect::<Vec<_>>());
    ArrayD::from_shape_fn(x.raw_dim(), |ix| {
        let mut acc = 0.0;
        for o in &offsets {
            let mut w = 1.0;
            let mut src = Some(vec![]);
            for (j, (&oj, k)) in o.iter().zip(&kernels).enumerate() {
                w *= k[oj];
                let p = ix[j] as isize + oj as isize - (k.len() / 2) as isize;
                src = src.and_then(|mut s: Vec<usize>| {
                    s.push(extend(p, x.shape()[j], mode)?);
                    Some(s)
                });
            }
            acc += w * src.map_or(cval, |s| x[IxDyn(&s)]);
        }
        acc
    })
}

fn mode() -> impl Strategy<Value = BoundaryMode> {
    prop_oneof![
        Just(BoundaryMode::Reflect),
        Just(BoundaryMode::Mirror),
        Just(BoundaryMode::Nearest),
        Just(BoundaryMode::Wrap),
        (-2.0..2.0f64).prop_map(BoundaryMode::Constant),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn gaussian_matches_direct_convolution(
        (x, sp) in common::shape(3, 6).prop_flat_map(|s| {
            let n = s.len();
            (common::scores_of(s).prop_map(|a| a.mapv(|v| if v.is_finite() { v } else { 3.0 })), spacing_of(n))
        }),
        width in 0.3..4.0f64,
        fwhm in any::<bool>(),
        physical in any::<bool>(),
        truncate in 0.5..4.0f64,
        mode in mode(),
    ) {
        let g = if fwhm { GaussianSmoothing::fwhm(width) } else { GaussianSmoothing::sigma(width) }.unwrap();
        let g = g
            .with_units(if physical { Units::Physical } else { Units::Voxels })
            .with_mode(mode).unwrap()
            .with_truncate(truncate).unwrap();
        let spacing = Spacing::new(sp.clone()).unwrap();
        let sigma = if fwhm { width / (2.0 * (2.0 * 2f64.ln()).sqrt()) } else { width };
        let sigmas: Vec<f64> = sp.iter().map(|s| if physical { sigma / s } else { sigma }).collect();
        prop_assert_eq!(g.sigmas(&spacing, x.ndim()).unwrap().len(), sigmas.len());
        let want = direct_gaussian(&x, &sigmas, truncate, mode);
        let got = g.apply(&x, &spacing).unwrap();
        let scale = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        for (&a, &b) in got.iter().zip(want.iter()) {
            prop_assert!((a - b).abs() <= 1e-12 * scale, "got {}, want {}", a, b);
        }
        // f32 follows within single-precision rounding
        let x32 = x.mapv(|v| v as f32);
        let got32 = g.apply(&x32, &spacing).unwrap();
        for (&a, &b) in got32.iter().zip(want.iter()) {
            prop_assert!((f64::from(a) - b).abs() <= 1e-5 * scale, "f32 got {}, want {}", a, b);
        }
    }
}

// ---------------------------------------------------------------- boxes

/// Components by flood fill (breadth-first), in order of their first voxel.
fn flood_components(mask: &ArrayD<bool>, full: bool) -> Vec<Vec<Vec<usize>>> {
    let shape = mask.shape().to_vec();
    let mut seen = ArrayD::from_elem(mask.raw_dim(), false);
    let mut comps = Vec::new();
    for v in voxels(&shape) {
        if !mask[IxDyn(&v)] || seen[IxDyn(&v)] {
            continue;
        }
        seen[IxDyn(&v)] = true;
        let mut comp = vec![v.clone()];
        let mut i = 0;
        while i < comp.len() {
            let c = comp[i].clone();
            i += 1;
            for w in voxels(&shape) {
                let diffs: Vec<usize> = c.iter().zip(&w).map(|(a, b)| a.abs_diff(*b)).collect();
                let adjacent = if full {
                    diffs.iter().all(|&d| d <= 1) && diffs.iter().any(|&d| d > 0)
                } else {
                    diffs.iter().sum::<usize>() == 1
                };
                if adjacent && mask[IxDyn(&w)] && !seen[IxDyn(&w)] {
                    seen[IxDyn(&w)] = true;
                    comp.push(w);
                }
            }
        }
        comps.push(comp);
    }
    comps
}

/// `(start, end)` corners of a box.
type Corners = (Vec<usize>, Vec<usize>);

/// Bounding box and the exhaustively searched largest inner box (most
/// voxels, then lexicographically smallest (start, end)); cubes only if
/// `square`.
fn brute_boxes(comp: &[Vec<usize>], square: bool) -> (Corners, Corners) {
    let nd = comp[0].len();
    let lo: Vec<usize> = (0..nd).map(|j| comp.iter().map(|v| v[j]).min().unwrap()).collect();
    let hi: Vec<usize> = (0..nd).map(|j| comp.iter().map(|v| v[j]).max().unwrap() + 1).collect();
    let set: std::collections::HashSet<&Vec<usize>> = comp.iter().collect();
    let mut best: Option<(usize, Vec<usize>, Vec<usize>)> = None;
    let starts = voxels(&hi).into_iter().filter(|s| s.iter().zip(&lo).all(|(a, b)| a >= b));
    for s in starts {
        let ends = voxels(&hi.iter().map(|h| h + 1).collect::<Vec<_>>())
            .into_iter()
            .filter(|e| e.iter().zip(&s).all(|(e, s)| e > s));
        for e in ends {
            let ext: Vec<usize> = e.iter().zip(&s).map(|(e, s)| e - s).collect();
            if square && ext.iter().any(|&x| x != ext[0]) {
                continue;
            }
            let vol: usize = ext.iter().product();
            let inside = voxels(&ext)
                .iter()
                .all(|o| set.contains(&o.iter().zip(&s).map(|(a, b)| a + b).collect::<Vec<_>>()));
            let better = match &best {
                None => true,
                Some((bv, bs, be)) => vol > *bv || (vol == *bv && (&s, &e) < (bs, be)),
            };
            if inside && better {
                best = Some((vol, s.clone(), e));
            }
        }
    }
    let (_, s, e) = best.unwrap();
    ((lo, hi), (s, e))
}

fn box_shape() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![common::shape(2, 7), prop::collection::vec(0..=4usize, 3)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn boxes_match_exhaustive_search(
        (mask, sp) in box_shape().prop_flat_map(|s| (mask_of(s.clone()), spacing_of(s.len()))),
        full in any::<bool>(),
        square in any::<bool>(),
    ) {
        let conn = if full { Connectivity::Full } else { Connectivity::Face };
        let comps = flood_components(&mask, full);
        let shape = if square { BoxShape::Square } else { BoxShape::Rectangle };
        let got = component_boxes(&mask, conn, shape).unwrap();
        prop_assert_eq!(got.len(), comps.len());
        let mut outer_union = ArrayD::from_elem(mask.raw_dim(), false);
        let mut inner_union = ArrayD::from_elem(mask.raw_dim(), false);
        for (g, c) in got.iter().zip(&comps) {
            let ((lo, hi), (s, e)) = brute_boxes(c, square);
            prop_assert_eq!(g.size, c.len());
            prop_assert_eq!((g.outer.start(), g.outer.end()), (&lo[..], &hi[..]));
            prop_assert_eq!((g.inner.start(), g.inner.end()), (&s[..], &e[..]));
            for v in voxels(mask.shape()) {
                if g.outer.contains(&v) { outer_union[IxDyn(&v)] = true; }
                if g.inner.contains(&v) { inner_union[IxDyn(&v)] = true; }
            }
        }
        // Scores: chessboard signed distance to each union, midpoint
        // convention, and centre convention with the inside shifted by the
        // smallest spacing.
        let spacing = Spacing::new(sp.clone()).unwrap();
        let scores = mask.mapv(|m| if m { 1.0f64 } else { -1.0 });
        let h = sp.iter().copied().fold(f64::INFINITY, f64::min);
        for (kind, union) in [(BoxKind::Outer, &outer_union), (BoxKind::Inner, &inner_union)] {
            let t = BoxScores::new(kind).with_connectivity(conn).with_shape(shape);
            let got = t.apply(&scores, &spacing).unwrap().into_owned();
            assert_close(&got, &brute_midpoint(union, Metric::Chessboard, &sp), 1e-9)?;
            let centre = t.with_convention(DistanceConvention::VoxelCentre);
            let got = centre.apply(&scores, &spacing).unwrap().into_owned();
            let mut want = brute_centre(union, Metric::Chessboard, &sp);
            want.zip_mut_with(union, |w, &inside| if inside && w.is_finite() { *w -= h });
            assert_close(&got, &want, 1e-9)?;
        }
    }
}

#[test]
fn box_transform_names_and_threshold() {
    let t: ScoreTransform = "box-outer:connectivity=full:threshold=0.5".parse().unwrap();
    let s = ndarray::array![[0.4_f64, 0.9, 0.2], [0.1, 0.2, 0.8]];
    // mask: (0,1) and (1,2): diagonal neighbours, one component with full connectivity
    let d = t.apply(&s, &Spacing::unit()).unwrap();
    assert_eq!(d[[0, 0]], -0.5);
    assert_eq!(d[[1, 1]], 0.5);
    let face: ScoreTransform = "box-outer:threshold=0.5".parse().unwrap();
    assert_eq!(face.apply(&s, &Spacing::unit()).unwrap()[[1, 1]], -0.5);
}

#[test]
fn inner_box_ties_prefer_the_smallest_corner() {
    // Four largest boxes of 4 voxels; the column at the left starts first.
    let rows = ["X...", "X.XX", "XXXX", "X..."];
    let mask = ArrayD::from_shape_vec(
        IxDyn(&[4, 4]),
        rows.iter().flat_map(|r| r.chars().map(|c| c == 'X')).collect(),
    )
    .unwrap();
    let got = component_boxes(&mask, Connectivity::Face, BoxShape::Rectangle).unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].inner.start(), got[0].inner.end()), (&[0, 0][..], &[4, 1][..]));
    let (_, (s, e)) = brute_boxes(&flood_components(&mask, false)[0], false);
    assert_eq!((s, e), (vec![0, 0], vec![4, 1]));
    // The same in 3-D, stacked twice along a new first axis.
    let m3 = ndarray::stack![ndarray::Axis(0), mask.view(), mask.view()];
    let got = component_boxes(&m3, Connectivity::Face, BoxShape::Rectangle).unwrap();
    assert_eq!((got[0].inner.start(), got[0].inner.end()), (&[0, 0, 0][..], &[2, 4, 1][..]));
}

#[test]
fn larger_images_with_many_tiles_match_brute_force() {
    // Shapes whose strided passes span several gathered tiles and partial
    // tiles, with sparse random masks and anisotropic spacing.
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(9);
    for (shape, sp) in [(vec![40, 37], vec![1.0, 0.7]), (vec![19, 18, 17], vec![2.5, 1.0, 0.8])] {
        let len: usize = shape.iter().product();
        let bits: Vec<bool> = (0..len).map(|_| rng.random_bool(0.04)).collect();
        let mask = ArrayD::from_shape_vec(IxDyn(&shape), bits).unwrap();
        for metric in [Metric::Euclidean, Metric::Chessboard, Metric::CityBlock] {
            let got: ArrayD<f64> =
                SignedDistance::new(metric).of_mask(&mask, &Spacing::new(sp.clone()).unwrap()).unwrap();
            let want = brute_midpoint(&mask, metric, &sp);
            for (&g, &w) in got.iter().zip(want.iter()) {
                assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "{metric} {shape:?}: got {g}, want {w}");
            }
        }
    }
}

/// Strided lines are read in place while a block of them fits a core's
/// L2 cache, and gathered in tiles beyond: a 3 x 400 x 380 volume takes
/// the first way in f32 (608 KB per block along axis 1) and the second in
/// f64 (1.2 MB). In 3-D the sweeps along axis 0 and the passes along the
/// last axis run range of lines by range of lines: both volumes here take
/// many ranges, and the second (long along axis 0) ranges of one or two
/// lines. Both against the definition at sampled voxels, and f32 against
/// f64 everywhere (unit spacing: the squared distances are exact in both
/// types).
#[test]
fn blocks_beyond_the_cache_are_gathered_in_tiles() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(13);
    for (shape, balls) in [([3, 400, 380], 40), ([700, 5, 48], 12)] {
        let balls: Vec<([f64; 3], f64)> = (0..balls)
            .map(|_| {
                let c = shape.map(|n| rng.random_range(0.0..n as f64));
                (c, rng.random_range(2.0..40.0))
            })
            .collect();
        let mask = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
            let p = ix.slice();
            balls.iter().any(|(c, r)| (0..3).map(|k| (p[k] as f64 - c[k]).powi(2)).sum::<f64>() <= r * r)
        });
        let mids = midpoints(&mask);
        let samples: Vec<Vec<usize>> =
            (0..150).map(|_| shape.iter().map(|&n| rng.random_range(0..n)).collect()).collect();
        for metric in [Metric::Euclidean, Metric::Chessboard, Metric::CityBlock] {
            let t = SignedDistance::new(metric);
            let d64: ArrayD<f64> = t.of_mask(&mask, &Spacing::unit()).unwrap();
            let d32: ArrayD<f32> = t.of_mask(&mask, &Spacing::unit()).unwrap();
            for ix in &samples {
                let want = brute_midpoint_at(&mask, &mids, metric, &[1.0; 3], ix);
                assert_eq!(d64[IxDyn(ix)], want, "{metric} {shape:?} f64 at {ix:?}");
                assert_eq!(d32[IxDyn(ix)], want as f32, "{metric} {shape:?} f32 at {ix:?}");
            }
            for (&a, &b) in d64.iter().zip(d32.iter()) {
                assert_eq!(a as f32, b, "{metric} {shape:?}: f64 {a}, f32 {b}");
            }
            let c = t.with_convention(DistanceConvention::VoxelCentre);
            let c64: ArrayD<f64> = c.of_mask(&mask, &Spacing::unit()).unwrap();
            let c32: ArrayD<f32> = c.of_mask(&mask, &Spacing::unit()).unwrap();
            for (&a, &b) in c64.iter().zip(c32.iter()) {
                assert_eq!(a as f32, b, "{metric} {shape:?} centre: f64 {a}, f32 {b}");
            }
        }
    }
}

/// Long lines: the envelope's arithmetic must not depend on how far from
/// the start of a line a site is. In f32, squares of positions past ~4000
/// (half voxels) lose the unit; distances computed from them were wrong
/// by more than 100% on a 20000-voxel axis. f64 against the definition on
/// a 3000-voxel axis, f32 against f64 on axes of 20000 and 100000.
#[test]
fn long_lines_keep_their_precision() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(12);
    let mut mask_of = |shape: &[usize]| {
        let len: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..len).map(|_| rng.random_bool(0.1)).collect()).unwrap()
    };
    let mask = mask_of(&[2, 3000]);
    let t = SignedDistance::new(Metric::Euclidean);
    let got: ArrayD<f64> = t.of_mask(&mask, &Spacing::unit()).unwrap();
    let want = brute_midpoint(&mask, Metric::Euclidean, &[1.0, 1.0]);
    for (&g, &w) in got.iter().zip(want.iter()) {
        assert!((g - w).abs() <= 1e-9 * w.abs().max(1.0), "f64: got {g}, want {w}");
    }
    for shape in [[3, 20_000], [2, 100_000]] {
        let mask = mask_of(&shape);
        for metric in [Metric::Euclidean, Metric::Chessboard, Metric::CityBlock] {
            let t = SignedDistance::new(metric);
            let d64: ArrayD<f64> = t.of_mask(&mask, &Spacing::unit()).unwrap();
            let d32: ArrayD<f32> = t.of_mask(&mask, &Spacing::unit()).unwrap();
            for (&a, &b) in d64.iter().zip(d32.iter()) {
                let err = (a - f64::from(b)).abs() / a.abs().max(1.0);
                assert!(err <= 1e-6, "{metric} {shape:?}: f32 {b}, f64 {a}");
            }
        }
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SignedDistance>();
    check::<GaussianSmoothing>();
    check::<BoxScores>();
    check::<Morphological>();
    check::<Footprint>();
    check::<ScoreTransform>();
    check::<confseg::transform::BoundingBox>();
    check::<confseg::transform::ComponentBoxes>();
    check::<Metric>();
    check::<BoundaryMode>();
}

// ---------------------------------------------------------------- threads

/// Threads inside one image split the passes into units whose arithmetic
/// does not depend on who runs them: the result is the same bit for bit
/// on 1, 2 or 3 threads (images above the splitting threshold, strided
/// lines read in place and gathered in tiles).
#[cfg(feature = "rayon")]
#[test]
fn threads_inside_one_image_give_bit_identical_results() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(11);
    let pool = |t: usize| rayon::ThreadPoolBuilder::new().num_threads(t).build().unwrap();
    let pools = [pool(1), pool(2), pool(3)];
    let bits = |a: &ArrayD<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<u64>>();
    let bits32 = |a: &ArrayD<f32>| a.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let transforms: Vec<ScoreTransform> = [
        "distance:euclidean",
        "distance:chessboard",
        "distance:cityblock",
        "distance-centre:euclidean",
        "distance-centre:cityblock",
        "gaussian-sigma:2",
        "gaussian-sigma:1.3:mode=constant:cval=0.5:units=physical",
        "gaussian-sigma:3:mode=wrap",
        "box-outer",
        "morphological:footprint=edge",
        "morphological:footprint=ball:radius=2:units=physical",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    for (shape, sp) in [
        (vec![200, 190], vec![0.7, 1.3]),
        (vec![40, 37, 25], vec![2.5, 1.0, 0.8]),
        (vec![3, 20, 30, 24], vec![1.0, 1.0, 0.5, 1.5]),
        // blocks along axis 1 beyond the in-place size in f64 (gathered tiles)
        (vec![2, 360, 370], vec![1.0, 0.8, 1.2]),
        // ranges of one or two lines for the sweeps and last-axis passes
        (vec![700, 5, 48], vec![0.6, 1.0, 1.1]),
    ] {
        let len: usize = shape.iter().product();
        let p = rng.random_range(0.05..0.6);
        let s: Vec<f64> =
            (0..len).map(|_| if rng.random_bool(p) { 1.0 } else { -1.0 } * rng.random::<f64>()).collect();
        let s = ArrayD::from_shape_vec(IxDyn(&shape), s).unwrap();
        let s32 = s.mapv(|x| x as f32);
        let spacing = Spacing::new(sp).unwrap();
        for t in &transforms {
            let run = |p: &rayon::ThreadPool| p.install(|| t.apply(&s, &spacing).unwrap().into_owned());
            let run32 = |p: &rayon::ThreadPool| p.install(|| t.apply(&s32, &spacing).unwrap().into_owned());
            let one = bits(&run(&pools[0]));
            let one32 = bits32(&run32(&pools[0]));
            for p in &pools[1..] {
                assert!(bits(&run(p)) == one, "{t} {shape:?} f64 on {} threads", p.current_num_threads());
                assert!(
                    bits32(&run32(p)) == one32,
                    "{t} {shape:?} f32 on {} threads",
                    p.current_num_threads()
                );
            }
        }
    }
}

#[test]
fn empty_predictions_follow_the_chosen_policy() {
    // Nothing above 0; the highest score is at (1, 2).
    let s = ndarray::array![[-3.0_f64, -2.0, -4.0], [-5.0, -6.0, -0.5], [-1.0, -7.0, -8.0]].into_dyn();
    let sp = Spacing::new(vec![1.0, 2.0]).unwrap();
    let mut argmax = ArrayD::from_elem(s.raw_dim(), false);
    argmax[[1, 2]] = true;
    for (name, metric) in [
        ("distance", Metric::Euclidean),
        ("box-outer", Metric::Chessboard),
        ("box-inner", Metric::Chessboard),
    ] {
        let default: ScoreTransform = name.parse().unwrap();
        assert!(default.apply(&s, &sp).unwrap().iter().all(|&x| x == f64::NEG_INFINITY), "{name}");
        let c: ScoreTransform = format!("{name}:empty=-12.5").parse().unwrap();
        assert!(c.apply(&s, &sp).unwrap().iter().all(|&x| x == -12.5), "{name}");
        let a: ScoreTransform = format!("{name}:empty=argmax").parse().unwrap();
        let got = a.apply(&s, &sp).unwrap().into_owned();
        assert_eq!(got, brute_midpoint(&argmax, metric, &[1.0, 2.0]), "{name}");
        // A non-empty prediction is untouched by the policy.
        let some = s.mapv(|x| x + 1.0);
        assert_eq!(a.apply(&some, &sp).unwrap(), default.apply(&some, &sp).unwrap(), "{name}");
        // The policy is part of the name and survives a round trip.
        assert_eq!(a.to_string().parse::<ScoreTransform>().unwrap(), a);
    }
    // A constant that overflows f32 is refused, not turned into inf.
    let c: ScoreTransform = "distance:empty=1e300".parse().unwrap();
    let err = c.apply(&s.mapv(|x| x as f32), &sp).unwrap_err().to_string();
    assert!(err.contains("float32"), "{err}");
    for bad in
        ["distance:empty=nan", "distance:empty=most", "box-outer:shape=square", "box-inner:shape=round"]
    {
        assert!(bad.parse::<ScoreTransform>().is_err(), "{bad}");
    }
}

#[test]
fn paper_box_convention_gives_exact_boxes() {
    // With unit spacing the centre convention scores the box's boundary
    // voxels 0 and {score > -k} is the box grown by k voxels on every side.
    let mut s = ArrayD::from_elem(IxDyn(&[12, 14]), -1.0_f64);
    for i in 3..7 {
        for j in 4..6 {
            s[[i, j]] = 1.0;
        }
    }
    s[[7, 9]] = 1.0; // a separate single-voxel component
    let t: ScoreTransform = "box-outer:convention=centre".parse().unwrap();
    let d = t.apply(&s, &Spacing::unit()).unwrap();
    assert_eq!(d[[3, 4]], 0.0);
    assert_eq!(d[[7, 9]], 0.0);
    for k in 1..3 {
        let grown = d.mapv(|x| x > -(k as f64) - 0.5);
        for ((i, j), &g) in grown.into_dimensionality::<ndarray::Ix2>().unwrap().indexed_iter() {
            let in_a = (3 - k..7 + k).contains(&i) && (4 - k..6 + k).contains(&j);
            let in_b = (7 - k..8 + k).contains(&i) && (9 - k..10 + k).contains(&j);
            assert_eq!(g, in_a || in_b, "k={k} at ({i}, {j})");
        }
    }
}

// ---------------------------------------------------------------- morphological steps

/// A footprint as the test builds it, independently of the library.
#[derive(Debug, Clone)]
enum Fp {
    Face,
    Edge,
    Full,
    /// radius, physical units
    Ball(f64, bool),
    /// shape and row-major cells (odd extents, symmetric, centre set)
    Custom(Vec<usize>, Vec<bool>),
}

impl Fp {
    fn transform(&self) -> Morphological {
        let fp = match self {
            Fp::Face => Footprint::Face,
            Fp::Edge => Footprint::Edge,
            Fp::Full => Footprint::Full,
            Fp::Ball(r, physical) => {
                Footprint::ball(*r, if *physical { Units::Physical } else { Units::Voxels }).unwrap()
            }
            Fp::Custom(shape, cells) => {
                Footprint::custom(&ArrayD::from_shape_vec(IxDyn(shape), cells.clone()).unwrap()).unwrap()
            }
        };
        Morphological::new(fp)
    }

    /// Every offset of the footprint (the centre included), for `ndim`-D images.
    fn offsets(&self, ndim: usize, spacing: &[f64]) -> Vec<Vec<isize>> {
        let cube = |h: &[isize]| -> Vec<Vec<isize>> {
            let mut out = vec![vec![]];
            for &hj in h {
                out = out
                    .into_iter()
                    .flat_map(|o| (-hj..=hj).map(move |x| [o.clone(), vec![x]].concat()))
                    .collect();
            }
            out
        };
        let nonzero = |o: &Vec<isize>| o.iter().filter(|&&x| x != 0).count();
        match self {
            Fp::Face => cube(&vec![1; ndim]).into_iter().filter(|o| nonzero(o) <= 1).collect(),
            Fp::Edge => cube(&vec![1; ndim]).into_iter().filter(|o| nonzero(o) <= 2).collect(),
            Fp::Full => cube(&vec![1; ndim]),
            Fp::Ball(r, physical) => {
                let u: Vec<f64> = if *physical { spacing.to_vec() } else { vec![1.0; ndim] };
                let h: Vec<isize> = u.iter().map(|&uj| (r / uj) as isize + 1).collect();
                cube(&h)
                    .into_iter()
                    .filter(|o| {
                        o.iter().zip(&u).map(|(&x, &uj)| (x as f64 * uj).powi(2)).sum::<f64>() <= r * r
                    })
                    .collect()
            }
            Fp::Custom(shape, cells) => {
                let h: Vec<isize> = shape.iter().map(|&n| (n / 2) as isize).collect();
                cube(&h).into_iter().zip(cells).filter(|(_, &c)| c).map(|(o, _)| o).collect()
            }
        }
    }
}

fn neighbour(v: &[usize], o: &[isize], shape: &[usize]) -> Option<Vec<usize>> {
    v.iter()
        .zip(o)
        .zip(shape)
        .map(|((&x, &d), &n)| {
            let y = x as isize + d;
            (y >= 0 && (y as usize) < n).then_some(y as usize)
        })
        .collect()
}

/// scipy's `binary_dilation(b, structure, border_value=0)`.
fn dilate(b: &ArrayD<bool>, offsets: &[Vec<isize>]) -> ArrayD<bool> {
    let mut out = b.clone();
    for (v, o) in out.indexed_iter_mut() {
        let v = v.slice().to_vec();
        *o = offsets.iter().any(|d| neighbour(&v, d, b.shape()).is_some_and(|w| b[IxDyn(&w)]));
    }
    out
}

/// scipy's `binary_erosion(b, structure, border_value=1)`.
fn erode(b: &ArrayD<bool>, offsets: &[Vec<isize>]) -> ArrayD<bool> {
    let mut out = b.clone();
    for (v, o) in out.indexed_iter_mut() {
        let v = v.slice().to_vec();
        *o = offsets.iter().all(|d| neighbour(&v, d, b.shape()).is_none_or(|w| b[IxDyn(&w)]));
    }
    out
}

/// The steps by iterating dilation and erosion until nothing changes.
fn iterated(mask: &ArrayD<bool>, offsets: &[Vec<isize>]) -> ArrayD<f64> {
    let mut out = mask.mapv(|b| if b { f64::INFINITY } else { f64::NEG_INFINITY });
    let mut cur = mask.clone();
    for k in 1.. {
        let next = dilate(&cur, offsets);
        if next == cur {
            break;
        }
        ndarray::Zip::from(&mut out).and(&next).and(&cur).for_each(|o, &n, &c| {
            if n && !c {
                *o = -(k as f64);
            }
        });
        cur = next;
    }
    let mut cur = mask.clone();
    for k in 1.. {
        let next = erode(&cur, offsets);
        if next == cur {
            break;
        }
        ndarray::Zip::from(&mut out).and(&next).and(&cur).for_each(|o, &n, &c| {
            if c && !n {
                *o = k as f64;
            }
        });
        cur = next;
    }
    out
}

/// A random symmetric footprint of `ndim` axes with extents 1, 3 or 5.
fn custom_footprint(ndim: usize) -> impl Strategy<Value = Fp> {
    prop::collection::vec(prop_oneof![Just(1usize), Just(3), Just(5)], ndim).prop_flat_map(|mut shape| {
        if shape.iter().all(|&n| n == 1) {
            shape[0] = 3; // room for a neighbour
        }
        let size: usize = shape.iter().product();
        prop::collection::vec(prop::bool::weighted(0.4), size / 2).prop_map(move |half| {
            let mut cells = vec![false; size];
            for (i, &b) in half.iter().enumerate() {
                cells[i] = b;
                cells[size - 1 - i] = b;
            }
            cells[size / 2] = true;
            if !half.iter().any(|&b| b) && size > 1 {
                cells[0] = true;
                cells[size - 1] = true;
            }
            Fp::Custom(shape.clone(), cells)
        })
    })
}

fn footprint_for(ndim: usize) -> impl Strategy<Value = Fp> {
    prop_oneof![
        Just(Fp::Face),
        Just(Fp::Edge),
        Just(Fp::Full),
        prop_oneof![Just(1.0), Just(1.5), Just(2.0), Just(2.5), 1.0..3.0f64].prop_map(|r| Fp::Ball(r, false)),
        (0.5..4.0f64).prop_map(|r| Fp::Ball(r, true)),
        custom_footprint(ndim),
    ]
}

fn mask_spacing_footprint() -> impl Strategy<Value = (ArrayD<bool>, Vec<f64>, Fp)> {
    small_shape().prop_flat_map(|s| {
        let n = s.len();
        (mask_of(s), spacing_of(n), footprint_for(n))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every footprint counts the steps of scipy's iterated dilation and
    /// erosion with the image's outside never contributing.
    #[test]
    fn morphological_steps_are_iterated_dilation_and_erosion((mask, sp, fp) in mask_spacing_footprint()) {
        let offsets = fp.offsets(mask.ndim(), &sp);
        let spacing = Spacing::new(sp.clone()).unwrap();
        let got = fp.transform().of_mask::<f64, _, _>(&mask, &spacing);
        if offsets.len() == 1 {
            // a physical ball smaller than every spacing: refused, not a transform that never grows
            prop_assert!(got.is_err(), "{fp:?} {sp:?}");
            return Ok(());
        }
        let got = got.unwrap();
        prop_assert_eq!(&got, &iterated(&mask, &offsets), "{:?} {:?}", fp, sp);
        let got32 = fp.transform().of_mask::<f32, _, _>(&mask, &spacing).unwrap();
        prop_assert_eq!(got32.mapv(f64::from), got);
    }

    /// `face` and `full` are the voxel-centre city-block and chessboard
    /// distances with unit spacing, bit for bit (±inf for an empty / full mask).
    #[test]
    fn face_and_full_are_the_centre_distances((mask, _) in mask_and_spacing()) {
        let unit = Spacing::unit();
        for (fp, metric) in [(Footprint::Face, Metric::CityBlock), (Footprint::Full, Metric::Chessboard)] {
            let m: ArrayD<f64> = Morphological::new(fp.clone()).of_mask(&mask, &unit).unwrap();
            let d: ArrayD<f64> = SignedDistance::new(metric)
                .with_convention(DistanceConvention::VoxelCentre)
                .of_mask(&mask, &unit)
                .unwrap();
            let bits = |a: &ArrayD<f64>| a.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            prop_assert_eq!(bits(&m), bits(&d), "{}", fp);
        }
    }
}

// ------------------------------------------- the outer tolerance statistic

/// A tolerance of 0 to 6 voxels, a share, or a volume.
fn outer_tolerance() -> impl Strategy<Value = Tolerance> {
    prop_oneof![
        (1u64..6).prop_map(Tolerance::Voxels),
        prop_oneof![Just(0.05), Just(0.1), Just(0.3), Just(0.5), Just(0.99), 0.0..1.0f64]
            .prop_map(|e| Tolerance::Share(Share::new(e).unwrap())),
        (0.5..8.0f64).prop_map(|v| Tolerance::Volume(Volume::new(v).unwrap())),
    ]
}

/// The empty-prediction policies.
fn empty_policy() -> impl Strategy<Value = &'static str> {
    prop_oneof![Just(""), Just(":empty=argmax"), Just(":empty=-3"), Just(":empty=2.5")]
}

/// A prediction, a truth with some voxels ignored, a spacing and a footprint.
fn labelled_case() -> impl Strategy<Value = (ArrayD<bool>, ArrayD<Voxel>, Vec<f64>, Fp)> {
    small_shape().prop_flat_map(|s| {
        let n = s.len();
        let len: usize = s.iter().product();
        let codes = prop::collection::vec(prop_oneof![6 => Just(0u8), 3 => Just(1u8), 1 => Just(2u8)], len);
        let shape = s.clone();
        let truth = codes.prop_map(move |c| {
            let v = c
                .into_iter()
                .map(|c| [Voxel::Background, Voxel::Object, Voxel::Ignored][c as usize])
                .collect();
            ArrayD::from_shape_vec(IxDyn(&shape), v).unwrap()
        });
        (mask_of(s), truth, spacing_of(n), footprint_for(n))
    })
}

/// A transform computed on the whole image: `apply` only, so the
/// calibrator transforms and selects.
struct Whole(ScoreTransform);

impl Transform for Whole {
    fn apply<'a, A: confseg::float::Float, D: Dimension>(
        &self,
        scores: &'a ndarray::ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> confseg::Result<ndarray::CowArray<'a, A, D>> {
        self.0.apply(scores, spacing)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(384))]

    /// With a morphological outer transform and an outer tolerance, the
    /// calibrator's statistics (the wavefront that stops at the deciding
    /// level) equal transforming the whole image and selecting, bit for bit,
    /// in f32 and f64, with ignored voxels, every empty policy and an inner
    /// tolerance beside; errors agree too.
    #[test]
    fn the_stopped_wavefront_equals_transforming_and_selecting(
        (pred, truth, sp, fp) in labelled_case(),
        outer in outer_tolerance(),
        inner in prop_oneof![Just(Tolerance::NONE), Just(Tolerance::Voxels(2))],
        empty in empty_policy(),
    ) {
        let name = format!("{}{empty}", fp.transform());
        let t: ScoreTransform = name.parse().unwrap();
        let spacing = Spacing::new(sp).unwrap();
        let tolerances = Tolerances::new(inner, outer);
        let scores = pred.mapv(|b| if b { 1.5 } else { -0.5 }) + &truth.mapv(|v| if v == Voxel::Object { 0.25 } else { 0.0 });
        let cal = Calibrator::new(ScoreTransform::Identity, t.clone()).with_tolerances(tolerances).with_spacing(spacing.clone());
        // the same transform without the shortcut: transformed, then selected
        let plain = Calibrator::new(Identity, Whole(t.clone())).with_tolerances(tolerances).with_spacing(spacing.clone());
        let got = cal.statistics(&scores, &truth).map_err(|e| e.to_string());
        let want: Result<ImageStatistics, String> = plain.statistics(&scores, &truth).map_err(|e| e.to_string());
        // the struct itself takes the same path as its name
        let ScoreTransform::Morphological(m) = &t else { unreachable!() };
        let own = Calibrator::new(Identity, m.clone()).with_tolerances(tolerances).with_spacing(spacing.clone());
        prop_assert_eq!(own.statistics(&scores, &truth).map_err(|e| e.to_string()), got.clone());
        match (&got, &want) {
            (Ok(g), Ok(w)) => {
                prop_assert_eq!(g.tau.to_bits(), w.tau.to_bits(), "{} {:?}", name, outer);
                prop_assert_eq!(g.gamma.to_bits(), w.gamma.to_bits(), "{} {:?}: {} vs {}", name, outer, g.gamma, w.gamma);
            }
            (Err(g), Err(w)) => prop_assert_eq!(g, w),
            _ => prop_assert!(false, "{name} {outer:?}: {got:?} vs {want:?}"),
        }
        let s32 = scores.mapv(|x| x as f32);
        let got32 = cal.statistics(&s32, &truth).map_err(|e| e.to_string());
        prop_assert_eq!(got32.map(|g| g.gamma.to_bits()), got.map(|g| g.gamma.to_bits()));
    }
}

/// NaN in the scores: the calibrator's statistics fail as transforming
/// the image does (naming the scores and the voxel, not a transform),
/// whatever the inner transform.
#[test]
fn the_stopped_wavefront_reports_nan_as_the_transform_does() {
    let mut s = ArrayD::from_elem(IxDyn(&[6, 7]), -1.0_f32);
    s[[2, 3]] = 1.0;
    s[[4, 5]] = f32::NAN;
    let truth = s.mapv(|x| x > 0.0);
    let outer: ScoreTransform = "morphological:footprint=edge".parse().unwrap();
    let tol = Tolerances::new(Tolerance::NONE, Tolerance::Voxels(1));
    for inner in ["identity", "sigmoid", "distance"] {
        let inner: ScoreTransform = inner.parse().unwrap();
        let with = Calibrator::new(inner.clone(), outer.clone()).with_tolerances(tol);
        let without = Calibrator::new(inner.clone(), outer.clone());
        let e = with.statistics(&s, &truth).unwrap_err();
        assert_eq!(e.to_string(), without.statistics(&s, &truth).unwrap_err().to_string(), "{inner}");
        assert!(matches!(e, confseg::Error::NanScore { what: "scores", .. }), "{inner}: {e}");
    }
}

/// Random masks of a few densities, with blobs.
fn random_mask(shape: &[usize], seed: u64) -> ArrayD<bool> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let len: usize = shape.iter().product();
    let p = [0.02, 0.2, 0.6][seed as usize % 3];
    ArrayD::from_shape_vec(IxDyn(shape), (0..len).map(|_| rng.random_bool(p)).collect()).unwrap()
}

/// 2-D and 3-D images with rows of several words, every footprint,
/// anisotropic balls in physical units and a custom footprint.
#[test]
fn morphological_footprints_match_iterated_dilation_in_2d_and_3d() {
    let cross3 = {
        let mut c = vec![false; 27];
        for i in [4, 10, 12, 13, 14, 16, 22] {
            c[i] = true;
        }
        c
    };
    let cases: Vec<(Vec<usize>, Vec<f64>, Vec<Fp>)> = vec![
        (
            vec![23, 150],
            vec![1.0, 0.45],
            vec![
                Fp::Face,
                Fp::Edge,
                Fp::Full,
                Fp::Ball(2.5, false),
                Fp::Ball(1.2, true),
                Fp::Custom(
                    vec![3, 5],
                    vec![
                        true, false, false, false, false, //
                        false, false, true, false, true, //
                        false, false, false, false, true,
                    ],
                ),
            ],
        ),
        (
            vec![9, 11, 70],
            vec![2.0, 1.0, 0.7],
            vec![
                Fp::Face,
                Fp::Edge,
                Fp::Full,
                Fp::Ball(2.0, false),
                Fp::Ball(2.1, true),
                Fp::Custom(vec![3, 3, 3], cross3),
            ],
        ),
    ];
    for (shape, sp, fps) in cases {
        let spacing = Spacing::new(sp.clone()).unwrap();
        for seed in 0..3 {
            let mask = random_mask(&shape, seed);
            for fp in &fps {
                if let Fp::Custom(s, c) = fp {
                    // the asymmetric variant is refused
                    if s.len() == 2 {
                        let mut c = c.clone();
                        c[7] = !c[7];
                        let a = ArrayD::from_shape_vec(IxDyn(s), c).unwrap();
                        assert!(Footprint::custom(&a).unwrap_err().to_string().contains("symmetric"));
                        continue;
                    }
                }
                let want = iterated(&mask, &fp.offsets(shape.len(), &sp));
                let got: ArrayD<f64> = fp.transform().of_mask(&mask, &spacing).unwrap();
                assert_eq!(got, want, "{fp:?} {shape:?} seed {seed}");
            }
        }
    }
}

/// Many rows on short leading axes, where padding the rows would more
/// than double them: offsets are then checked against the bounds.
#[test]
fn morphological_steps_without_padded_rows() {
    let shape = [2, 2, 1100, 3];
    for seed in [1, 2] {
        let mask = random_mask(&shape, seed);
        for fp in [Fp::Edge, Fp::Ball(2.0, false)] {
            let want = iterated(&mask, &fp.offsets(4, &[1.0; 4]));
            let got: ArrayD<f64> = fp.transform().of_mask(&mask, &Spacing::unit()).unwrap();
            assert_eq!(got, want, "{fp:?} seed {seed}");
        }
    }
}

/// The options change the result as documented: each test fails if its
/// option is ignored.
#[test]
fn morphological_options_act() {
    let sp = Spacing::new(vec![1.0, 3.0]).unwrap();
    let mut s = ArrayD::from_elem(IxDyn(&[9, 9]), -1.0_f64);
    s[[4, 4]] = 2.0;
    s[[4, 5]] = 0.7;
    let t = |name: &str| name.parse::<ScoreTransform>().unwrap().apply(&s, &sp).unwrap().into_owned();
    let mask = |t: f64| s.mapv(|x| x > t);
    let of = |fp: Fp, m: &ArrayD<bool>| iterated(m, &fp.offsets(2, &[1.0, 3.0]));
    // threshold: the predicted mask is scores > T
    assert_eq!(t("morphological:threshold=1"), of(Fp::Face, &mask(1.0)));
    assert_ne!(t("morphological:threshold=1"), t("morphological"));
    assert_eq!(t("morphological"), of(Fp::Face, &mask(0.0)));
    // footprint
    assert_eq!(t("morphological:footprint=full"), of(Fp::Full, &mask(0.0)));
    assert_ne!(t("morphological:footprint=full"), t("morphological:footprint=face"));
    // radius and units: radius 3 in voxels is a disk; in physical units with
    // 1 x 3 spacing, an ellipse one pixel wide along the second axis
    assert_eq!(t("morphological:footprint=ball:radius=3"), of(Fp::Ball(3.0, false), &mask(0.0)));
    let physical = t("morphological:footprint=ball:radius=3:units=physical");
    assert_eq!(physical, of(Fp::Ball(3.0, true), &mask(0.0)));
    assert_ne!(physical, t("morphological:footprint=ball:radius=3"));
    assert_ne!(t("morphological:footprint=ball:radius=2"), t("morphological:footprint=ball:radius=3"));
    // a physical ball depends on the spacing, the others do not
    let ball: ScoreTransform = "morphological:footprint=ball:radius=3:units=physical".parse().unwrap();
    assert!(ball.uses_spacing());
    assert!(!"morphological:footprint=ball:radius=3".parse::<ScoreTransform>().unwrap().uses_spacing());
    assert_ne!(ball.apply(&s, &Spacing::unit()).unwrap(), ball.apply(&s, &sp).unwrap());
    let full: ScoreTransform = "morphological:footprint=full".parse().unwrap();
    assert_eq!(full.apply(&s, &Spacing::unit()).unwrap(), full.apply(&s, &sp).unwrap());
    // empty: the policy applies when nothing is predicted
    let nothing = s.mapv(|x| x - 10.0);
    let e = |name: &str| name.parse::<ScoreTransform>().unwrap().apply(&nothing, &sp).unwrap().into_owned();
    assert!(e("morphological").iter().all(|&x| x == f64::NEG_INFINITY));
    assert!(e("morphological:empty=-40").iter().all(|&x| x == -40.0));
    let mut top = ArrayD::from_elem(IxDyn(&[9, 9]), false);
    top[[4, 4]] = true;
    assert_eq!(e("morphological:empty=argmax"), of(Fp::Face, &top));
    // a full prediction is +inf everywhere
    assert!(t("morphological:threshold=-2").iter().all(|&x| x == f64::INFINITY));
}

/// Views in any memory order give the steps of their logical content.
#[test]
fn morphological_steps_of_strided_and_transposed_views() {
    let mask = random_mask(&[12, 90, 7], 1);
    let s = mask.mapv(|b| if b { 1.0_f32 } else { -1.0 });
    for name in ["morphological:footprint=edge", "morphological:footprint=ball:radius=2", "morphological"] {
        let t: ScoreTransform = name.parse().unwrap();
        let v = s.view().permuted_axes(IxDyn(&[2, 0, 1]));
        let c = v.as_standard_layout().into_owned();
        assert_eq!(t.apply(&v, &Spacing::unit()).unwrap(), t.apply(&c, &Spacing::unit()).unwrap(), "{name}");
        let strided =
            s.slice_each_axis(|a| ndarray::Slice::new(0, None, if a.axis.index() == 1 { 3 } else { 1 }));
        let c = strided.as_standard_layout().into_owned();
        assert_eq!(
            t.apply(&strided, &Spacing::unit()).unwrap(),
            t.apply(&c, &Spacing::unit()).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn morphological_names_and_errors() {
    for s in [
        "morphological:footprint=face",
        "morphological:footprint=edge:threshold=0.5",
        "morphological:footprint=full:empty=argmax",
        "morphological:footprint=ball:radius=2.5",
        "morphological:footprint=ball:radius=1.5:units=physical:threshold=-1:empty=-3",
        "morphological:footprint=[010,111,010]",
        "morphological:footprint=[[000,010,000],[010,111,010],[000,010,000]]",
        "morphological:footprint=10101",
    ] {
        let t: ScoreTransform = s.parse().unwrap();
        assert_eq!(t.to_string(), s);
        assert_eq!(t.to_string().parse::<ScoreTransform>().unwrap(), t);
    }
    assert_eq!(
        "morphological:units=voxels:footprint=ball:radius=2".parse::<ScoreTransform>().unwrap().to_string(),
        "morphological:footprint=ball:radius=2"
    );
    for (bad, says) in [
        ("morphological:edge", "footprint=edge"),
        ("morphological:footprint=hex", "footprint is face, edge"),
        ("morphological:footprint=ball", "radius=R"),
        ("morphological:footprint=ball:radius=0.5", "radius"),
        ("morphological:footprint=ball:radius=inf", "finite"),
        ("morphological:radius=2", "radius applies to footprint=ball"),
        ("morphological:footprint=edge:units=physical", "units applies to footprint=ball"),
        ("morphological:footprint=ball:radius=2:units=mm", "voxels or physical"),
        ("morphological:connectivity=full", "morphological options"),
        ("morphological:threshold=nan", "threshold"),
        ("morphological:footprint=[110,111,010]", "symmetric"),
        ("morphological:footprint=[011,110]", "odd"),
        ("morphological:footprint=[01,111]", "0/1 digits"),
        ("morphological:footprint=/nonexistent/f.npy", "f.npy"),
    ] {
        let e = bad.parse::<ScoreTransform>().unwrap_err().to_string();
        assert!(e.contains(says), "{bad}: {e}");
    }
    // a 2-D footprint on a 3-D image, and a ball too large for the bound
    let t: ScoreTransform = "morphological:footprint=[010,111,010]".parse().unwrap();
    let e = t.apply(&ArrayD::<f64>::zeros(IxDyn(&[3, 3, 3])), &Spacing::unit()).unwrap_err().to_string();
    assert!(e.contains("2-D") && e.contains("3-D"), "{e}");
    let t: ScoreTransform = "morphological:footprint=ball:radius=40".parse().unwrap();
    let e = t.apply(&ArrayD::<f64>::zeros(IxDyn(&[90, 90, 90])), &Spacing::unit()).unwrap_err().to_string();
    assert!(e.contains("at most"), "{e}");
}

/// A footprint file is read once, stored by value: the name and the fitted
/// file hold the cells, not the path.
#[cfg(all(feature = "npy", feature = "serde"))]
#[test]
fn footprint_files_are_stored_by_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fp.npy");
    let cells = ndarray::array![[false, true, false], [true, true, true], [false, true, false]];
    confseg::io::write_npy(&path, &cells.mapv(u8::from)).unwrap();
    let t: ScoreTransform = format!("morphological:footprint={}", path.display()).parse().unwrap();
    assert_eq!(t.to_string(), "morphological:footprint=[010,111,010]");
    let j = serde_json::to_string(&t).unwrap();
    assert!(!j.contains("fp.npy") && j.contains("010111010"), "{j}");
    std::fs::remove_file(&path).unwrap();
    assert_eq!(serde_json::from_str::<ScoreTransform>(&j).unwrap(), t);
    let s = random_mask(&[20, 30], 2).mapv(|b| if b { 1.0 } else { -1.0 });
    assert_eq!(
        t.apply(&s, &Spacing::unit()).unwrap(),
        "morphological".parse::<ScoreTransform>().unwrap().apply(&s, &Spacing::unit()).unwrap()
    );
    // a path with ':' in it (a folder "a:b", a drive letter) is read whole
    let odd = dir.path().join("a:b");
    std::fs::create_dir(&odd).unwrap();
    confseg::io::write_npy(odd.join("fp.npy"), &cells.mapv(u8::from)).unwrap();
    let spec = format!("morphological:footprint={}:threshold=0.5", odd.join("fp.npy").display());
    let u: ScoreTransform = spec.parse().unwrap();
    assert_eq!(u.to_string(), "morphological:footprint=[010,111,010]:threshold=0.5");
    // a part without '=' after another option still fails, on that option's value
    let e = "distance:threshold=0.5:x".parse::<ScoreTransform>().unwrap_err();
    assert!(e.to_string().contains("0.5:x"), "{e}");
    let e = "distance:euclidean:x".parse::<ScoreTransform>().unwrap_err();
    assert!(e.to_string().contains("expected key=value"), "{e}");
    // asymmetric and oversized files are refused with the reason
    confseg::io::write_npy(&path, &ndarray::array![[0u8, 1, 1]]).unwrap();
    let e = format!("morphological:footprint={}", path.display()).parse::<ScoreTransform>().unwrap_err();
    assert!(e.to_string().contains("symmetric"), "{e}");
    confseg::io::write_npy(&path, &ArrayD::<u8>::ones(IxDyn(&[1, 1 << 19]))).unwrap();
    let e = format!("morphological:footprint={}", path.display()).parse::<ScoreTransform>().unwrap_err();
    assert!(e.to_string().contains("at most"), "{e}");
}
