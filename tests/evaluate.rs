//! Validation, baselines and selection against independent brute-force
//! computations, and the statistical behaviour of the methods on synthetic data.

use confseg::evaluate::{select::select, Geometry, Method, Pool, Report, Splits, Validation};
use confseg::float::Float;
use confseg::levels::ModeKind;
use confseg::quantile::conformal_quantile;
use confseg::quantile::Rank;
use confseg::synthetic::Synthetic;
use confseg::transform::Footprint;
use confseg::Levels;
use confseg::{Alpha, Calibration, Calibrator, Error, Identity, Spacing, Transform};
use ndarray::{Array2, Array3, ArrayRef, Axis, CowArray, Dimension};

fn a(x: f64) -> Alpha {
    Alpha::new(x).unwrap()
}

type Stack = (Array3<f64>, Array3<bool>);

fn toy() -> Stack {
    Synthetic::new([12, 14]).seed(5).stack(0..60)
}

// ---------- brute-force geometry (all pairs, physical units) ----------

fn points(set: &Array2<bool>, spacing: &[f64]) -> Vec<[f64; 2]> {
    set.indexed_iter()
        .filter(|(_, &b)| b)
        .map(|((i, j), _)| [i as f64 * spacing[0], j as f64 * spacing[1]])
        .collect()
}

fn dist(p: &[f64; 2], q: &[f64; 2]) -> f64 {
    ((p[0] - q[0]).powi(2) + (p[1] - q[1]).powi(2)).sqrt()
}

fn diameter(set: &Array2<bool>, spacing: &[f64]) -> Option<f64> {
    let p = points(set, spacing);
    (!p.is_empty()).then(|| p.iter().flat_map(|x| p.iter().map(move |y| dist(x, y))).fold(0.0, f64::max))
}

fn hausdorff(x: &Array2<bool>, y: &Array2<bool>, spacing: &[f64]) -> Option<f64> {
    let (px, py) = (points(x, spacing), points(y, spacing));
    match (px.is_empty(), py.is_empty()) {
        (true, true) => return Some(0.0),
        (true, false) | (false, true) => return None,
        _ => {}
    }
    let dir = |a: &[[f64; 2]], b: &[[f64; 2]]| {
        a.iter().map(|p| b.iter().map(|q| dist(p, q)).fold(f64::INFINITY, f64::min)).fold(0.0, f64::max)
    };
    Some(dir(&px, &py).max(dir(&py, &px)))
}

/// Band width by definition: from each voxel of the outer contour (in `O`,
/// with a face neighbour in the image outside `O`) to the nearest inner
/// voxel; `(mean, max)`, `None` for an empty inner set or no contour.
fn band_width(inner: &Array2<bool>, outer: &Array2<bool>, spacing: &[f64]) -> Option<(f64, f64)> {
    let pi = points(inner, spacing);
    let (h, w) = outer.dim();
    let contour: Vec<[f64; 2]> = outer
        .indexed_iter()
        .filter(|&((i, j), &o)| {
            let out = |a: i64, b: i64| {
                a >= 0 && b >= 0 && a < h as i64 && b < w as i64 && !outer[[a as usize, b as usize]]
            };
            let (i, j) = (i as i64, j as i64);
            o && (out(i - 1, j) || out(i + 1, j) || out(i, j - 1) || out(i, j + 1))
        })
        .map(|((i, j), _)| [i as f64 * spacing[0], j as f64 * spacing[1]])
        .collect();
    if pi.is_empty() || contour.is_empty() {
        return None;
    }
    let d: Vec<f64> =
        contour.iter().map(|p| pi.iter().map(|q| dist(p, q)).fold(f64::INFINITY, f64::min)).collect();
    Some((d.iter().sum::<f64>() / d.len() as f64, d.iter().copied().fold(0.0, f64::max)))
}

/// Running means of every reported quantity, computed from explicit sets.
#[derive(Default)]
struct Brute {
    inner_cov: Vec<f64>,
    outer_cov: Vec<f64>,
    joint_cov: Vec<f64>,
    sums: [(f64, usize); 19],
    /// Count coverage as these tolerance events (inner count, outer share
    /// in hundredths) instead of containment.
    events: Option<(usize, usize)>,
}

impl Brute {
    fn add(&mut self, k: usize, x: f64) {
        self.sums[k].0 += x;
        self.sums[k].1 += 1;
    }
    fn mean(&self, k: usize) -> Option<f64> {
        let (s, n) = self.sums[k];
        (n > 0).then(|| s / n as f64)
    }

    /// Record one split's explicit sets against the truths.
    fn split(&mut self, sets: &[(Array2<bool>, Array2<bool>)], truths: &[Array2<bool>], spacing: &[f64]) {
        let (mut ci, mut co, mut cj) = (0, 0, 0);
        for ((inner, outer), y) in sets.iter().zip(truths) {
            let v = y.len() as f64;
            let ny = y.iter().filter(|&&b| b).count() as f64;
            let false_pos = inner.iter().zip(y).filter(|(&i, &t)| i && !t).count();
            let missed = outer.iter().zip(y).filter(|(&o, &t)| t && !o).count();
            let (i_ok, o_ok) = match self.events {
                None => (false_pos == 0, missed == 0),
                Some((m, pct)) => (false_pos <= m, missed * 100 <= pct * ny as usize),
            };
            ci += usize::from(i_ok);
            co += usize::from(o_ok);
            cj += usize::from(i_ok && o_ok);
            let ni = inner.iter().filter(|&&b| b).count() as f64;
            let no = outer.iter().filter(|&&b| b).count() as f64;
            let y_not_i = y.iter().zip(inner).filter(|(&t, &i)| t && !i).count() as f64;
            let o_not_y = y.iter().zip(outer).filter(|(&t, &o)| !t && o).count() as f64;
            let y_not_o = y.iter().zip(outer).filter(|(&t, &o)| t && !o).count() as f64;
            if ny > 0.0 {
                self.add(0, ni / ny);
                self.add(1, no / ny);
                self.add(6, y_not_o / ny);
            } else {
                self.add(6, 0.0);
            }
            self.add(2, ni / v);
            self.add(3, no / v);
            self.add(4, y_not_i / v);
            self.add(5, o_not_y / v);
            let i_not_y = y.iter().zip(inner).filter(|(&t, &i)| !t && i).count() as f64;
            self.add(13, if ni > 0.0 { i_not_y / ni } else { 0.0 });
            if let Some(dy) = diameter(y, spacing).filter(|&d| d > 0.0) {
                self.add(7, diameter(inner, spacing).unwrap_or(0.0) / dy);
                if let Some(d) = diameter(outer, spacing) {
                    self.add(8, d / dy);
                }
            }
            match hausdorff(inner, y, spacing) {
                Some(h) => {
                    self.add(9, h);
                    self.add(11, 0.0);
                }
                None => self.add(11, 1.0),
            }
            match hausdorff(outer, y, spacing) {
                Some(h) => {
                    self.add(10, h);
                    self.add(12, 0.0);
                }
                None => self.add(12, 1.0),
            }
            match (band_width(inner, outer, spacing), band_width(inner, outer, &[1.0, 1.0])) {
                (Some((mean, max)), Some((mean_v, max_v))) => {
                    self.add(14, mean);
                    self.add(15, max);
                    self.add(16, mean_v);
                    self.add(17, max_v);
                    self.add(18, 0.0);
                }
                _ => self.add(18, 1.0),
            }
        }
        let n = truths.len() as f64;
        self.inner_cov.push(ci as f64 / n);
        self.outer_cov.push(co as f64 / n);
        self.joint_cov.push(cj as f64 / n);
    }

    fn check(&self, r: &Report) {
        let close = |x: f64, y: f64, what: &str| {
            assert!((x - y).abs() < 1e-9, "{} {}: {what} {x} vs {y}", r.method, r.alpha)
        };
        let opt = |x: Option<f64>, y: Option<f64>, what: &str| match (x, y) {
            (Some(x), Some(y)) => close(x, y, what),
            (x, y) => assert_eq!(x, y, "{} {}: {what}", r.method, r.alpha),
        };
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        close(r.inner_coverage, mean(&self.inner_cov), "inner coverage");
        close(r.outer_coverage, mean(&self.outer_cov), "outer coverage");
        close(r.joint_coverage, mean(&self.joint_cov), "joint coverage");
        let e = &r.efficiency;
        opt(e.inner_size_ratio, self.mean(0), "|I|/|Y|");
        opt(e.outer_size_ratio, self.mean(1), "|O|/|Y|");
        opt(Some(e.inner_share), self.mean(2), "|I|/|V|");
        opt(Some(e.outer_share), self.mean(3), "|O|/|V|");
        opt(Some(e.under_covered), self.mean(4), "under");
        opt(Some(e.over_covered), self.mean(5), "over");
        opt(Some(e.outer_missed_fraction), self.mean(6), "missed");
        opt(Some(e.inner_false_fraction), self.mean(13), "false discovery proportion");
        opt(e.inner_diameter_ratio, self.mean(7), "inner diameter");
        opt(e.outer_diameter_ratio, self.mean(8), "outer diameter");
        opt(e.inner_hausdorff, self.mean(9), "inner hausdorff");
        opt(e.outer_hausdorff, self.mean(10), "outer hausdorff");
        opt(e.inner_hausdorff_infinite, self.mean(11), "inner hausdorff inf");
        opt(e.outer_hausdorff_infinite, self.mean(12), "outer hausdorff inf");
        opt(e.band_width_mean, self.mean(14), "band width mean");
        opt(e.band_width_max, self.mean(15), "band width max");
        opt(e.band_width_mean_voxels, self.mean(16), "band width mean, voxels");
        opt(e.band_width_max_voxels, self.mean(17), "band width max, voxels");
        opt(e.band_width_undefined, self.mean(18), "band width undefined");
    }
}

#[test]
fn conformal_validation_matches_sets_built_by_predict() {
    let (scores, masks) = toy();
    let spacing = vec![2.0, 1.0];
    let cal = Calibrator::new(Identity, Identity).with_spacing(Spacing::new(spacing.clone()).unwrap());
    let pool = Pool::new(&cal, &scores, &masks, 0.0).unwrap();
    let splits = Splits::new(30, 4, 9).unwrap().with_n_test(20).unwrap();
    let alphas = [0.1, 0.25];
    let specs = [Levels::new(ModeKind::Marginal), Levels::bonferroni(1.0, 3.0), Levels::new(ModeKind::Max)];
    let methods: Vec<Method> = specs.iter().map(|&s| Method::Conformal(s)).collect();
    let reports = Validation::new(alphas.iter().map(|&x| a(x)).collect(), splits)
        .with_geometry(Geometry::AllSplits)
        .run(&pool, &methods)
        .unwrap();
    assert_eq!(reports.len(), 6);
    // band widths are defined on some images, and differ in mm and in voxels
    assert!(reports.iter().any(|r| {
        let e = &r.efficiency;
        e.band_width_mean.is_some() && e.band_width_mean != e.band_width_mean_voxels
    }));
    let img = |i: usize| (scores.index_axis(Axis(0), i).to_owned(), masks.index_axis(Axis(0), i).to_owned());
    for (mi, spec) in specs.iter().enumerate() {
        for (ai, &alpha) in alphas.iter().enumerate() {
            let mut brute = Brute::default();
            for (cal_idx, test_idx) in splits.generate(60).unwrap() {
                // calibrate from scratch on the calibration part
                let mut c = Calibration::new();
                for &i in &cal_idx {
                    let (s, m) = img(i);
                    cal.observe(&mut c, &s, &m).unwrap();
                }
                let fitted = cal.fit(&c, *spec.at(a(alpha)).unwrap().mode().unwrap()).unwrap();
                let mut sets = Vec::new();
                let mut truths = Vec::new();
                for &j in &test_idx {
                    let (s, m) = img(j);
                    let p = fitted.predict(&s).unwrap();
                    // the statistics identity, image by image
                    let st = pool.statistics().get(j).unwrap();
                    let cov = p.coverage(&m).unwrap();
                    assert_eq!(cov.inner, st.tau <= fitted.thresholds().inner.value());
                    assert_eq!(cov.outer, st.gamma <= fitted.thresholds().outer.value());
                    sets.push((p.inner, p.outer));
                    truths.push(m);
                }
                brute.split(&sets, &truths, &spacing);
            }
            let r = &reports[mi * alphas.len() + ai];
            assert_eq!(r.alpha, alpha);
            assert_eq!(r.method, format!("conformal {spec}"));
            brute.check(r);
            assert_eq!(r.efficiency.geometry_splits, 4);
            assert_eq!((r.n_cal, r.n_test, r.splits), (30, 20, 4));
        }
    }
}

/// With tolerances, validation counts each split's tolerance events on the
/// sets `predict` builds (and the conformal thresholds are the
/// tolerance-calibrated ones).
#[test]
fn tolerance_validation_matches_sets_built_by_predict() {
    use confseg::tolerance::{Tolerance, Tolerances};
    let (scores, masks) = toy();
    let spacing = vec![1.0, 1.0];
    let t = Tolerances::new(Tolerance::Voxels(3), "0.1".parse().unwrap());
    let cal = Calibrator::new(Identity, Identity).with_tolerances(t);
    let pool = Pool::new(&cal, &scores, &masks, 0.0).unwrap();
    assert_eq!(pool.tolerances(), t);
    let splits = Splits::new(30, 4, 9).unwrap().with_n_test(20).unwrap();
    let specs = [Levels::new(ModeKind::Marginal), Levels::new(ModeKind::Max)];
    let methods: Vec<Method> = specs.iter().map(|&s| Method::Conformal(s)).collect();
    let reports =
        Validation::new(vec![a(0.2)], splits).with_geometry(Geometry::Off).run(&pool, &methods).unwrap();
    let img = |i: usize| (scores.index_axis(Axis(0), i).to_owned(), masks.index_axis(Axis(0), i).to_owned());
    for (mi, spec) in specs.iter().enumerate() {
        let mut brute = Brute { events: Some((3, 10)), ..Brute::default() };
        for (cal_idx, test_idx) in splits.generate(60).unwrap() {
            let mut c = Calibration::new();
            for &i in &cal_idx {
                let (s, m) = img(i);
                cal.observe(&mut c, &s, &m).unwrap();
            }
            let fitted = cal.fit(&c, *spec.at(a(0.2)).unwrap().mode().unwrap()).unwrap();
            let (mut sets, mut truths) = (Vec::new(), Vec::new());
            for &j in &test_idx {
                let (s, m) = img(j);
                let p = fitted.predict(&s).unwrap();
                sets.push((p.inner, p.outer));
                truths.push(m);
            }
            brute.split(&sets, &truths, &spacing);
        }
        let r = &reports[mi];
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        assert!((r.inner_coverage - mean(&brute.inner_cov)).abs() < 1e-12, "{spec}");
        assert!((r.outer_coverage - mean(&brute.outer_cov)).abs() < 1e-12, "{spec}");
        assert!((r.joint_coverage - mean(&brute.joint_cov)).abs() < 1e-12, "{spec}");
        assert!(
            (r.efficiency.inner_false_fraction - brute.mean(13).unwrap()).abs() < 1e-12,
            "{spec}: false discovery proportion"
        );
    }
}

fn dilate(m: &Array2<bool>, footprint: &Footprint) -> Array2<bool> {
    let (r, c) = m.dim();
    Array2::from_shape_fn((r, c), |(i, j)| {
        (i.saturating_sub(1)..(i + 2).min(r)).any(|u| {
            (j.saturating_sub(1)..(j + 2).min(c)).any(|v| {
                let diag = u != i && v != j;
                m[[u, v]] && (*footprint == Footprint::Full || !diag)
            })
        })
    })
}

#[test]
fn baselines_match_their_definitions() {
    let (scores, masks) = toy();
    let cal = Calibrator::new(Identity, Identity);
    let pool = Pool::new(&cal, &scores, &masks, 0.0).unwrap();
    let splits = Splits::new(30, 3, 21).unwrap().with_n_test(20).unwrap();
    let alpha = 0.2;
    let methods = [
        Method::RiskControl,
        Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
        Method::Morphological(Footprint::Full, Rank::Marginal),
        Method::Morphological(Footprint::Face, Rank::Marginal),
    ];
    let reports = Validation::new(vec![a(alpha)], splits)
        .with_geometry(Geometry::AllSplits)
        .run(&pool, &methods)
        .unwrap();
    let spacing = [1.0, 1.0];
    let s_ = |i: usize| scores.index_axis(Axis(0), i).to_owned();
    let m_ = |i: usize| masks.index_axis(Axis(0), i).to_owned();
    let voxels = 12.0 * 14.0;
    for (method, r) in methods.iter().zip(&reports) {
        let mut brute = Brute::default();
        for (cal_idx, test_idx) in splits.generate(60).unwrap() {
            let truths: Vec<Array2<bool>> = test_idx.iter().map(|&j| m_(j)).collect();
            let sets: Vec<(Array2<bool>, Array2<bool>)> = match method {
                Method::RiskControl => {
                    // the largest t with n/(n+1) mean FNR(t) + 1/(n+1) <= alpha, by scanning
                    let objs: Vec<Vec<f64>> = cal_idx
                        .iter()
                        .map(|&i| {
                            s_(i).iter().zip(m_(i).iter()).filter(|(_, &y)| y).map(|(&s, _)| s).collect()
                        })
                        .collect();
                    let n = objs.len() as f64;
                    let ok = |t: f64| {
                        let fnr: f64 = objs
                            .iter()
                            .map(|o| {
                                if o.is_empty() {
                                    0.0
                                } else {
                                    o.iter().filter(|&&v| v < t).count() as f64 / o.len() as f64
                                }
                            })
                            .sum::<f64>()
                            / n;
                        n / (n + 1.0) * fnr + 1.0 / (n + 1.0) <= alpha
                    };
                    let t = if ok(f64::INFINITY) {
                        f64::INFINITY
                    } else {
                        objs.iter().flatten().copied().filter(|&t| ok(t)).fold(f64::NEG_INFINITY, f64::max)
                    };
                    let mut rc = confseg::calibrate::RiskCalibration::new();
                    for o in &objs {
                        rc.push(o.clone()).unwrap();
                    }
                    assert_eq!(t, rc.threshold(a(alpha)).unwrap());
                    test_idx
                        .iter()
                        .map(|&j| (Array2::from_elem((12, 14), false), s_(j).mapv(|x| x >= t)))
                        .collect()
                }
                Method::PixelwiseBonferroni(_) => {
                    let (ai, ao) = (alpha * 0.2, alpha * 0.8);
                    let mut obj = Vec::new();
                    let mut bg = Vec::new();
                    for &i in &cal_idx {
                        for (&s, &y) in s_(i).iter().zip(m_(i).iter()) {
                            if y {
                                obj.push(s)
                            } else {
                                bg.push(s)
                            }
                        }
                    }
                    let (n1, n0) = (obj.len() as f64, bg.len() as f64);
                    test_idx
                        .iter()
                        .map(|&j| {
                            let s = s_(j);
                            let inner = s.mapv(|x| {
                                (1.0 + bg.iter().filter(|&&b| b >= x).count() as f64) / (n0 + 1.0)
                                    <= ai / voxels
                            });
                            let outer = s.mapv(|x| {
                                (1.0 + obj.iter().filter(|&&o| o <= x).count() as f64) / (n1 + 1.0)
                                    > ao / voxels
                            });
                            (inner, outer)
                        })
                        .collect()
                }
                Method::Morphological(metric, _) => {
                    // k_i = fewest dilations of the prediction that contain the truth
                    let need = |i: usize| -> f64 {
                        let y = m_(i);
                        if !y.iter().any(|&b| b) {
                            return f64::NEG_INFINITY;
                        }
                        let mut d = s_(i).mapv(|x| x > 0.0);
                        for k in 0..40 {
                            if y.iter().zip(&d).all(|(&t, &o)| !t || o) {
                                return f64::from(k);
                            }
                            d = dilate(&d, metric);
                        }
                        f64::INFINITY
                    };
                    let ks: Vec<f64> = cal_idx.iter().map(|&i| need(i)).collect();
                    let k = conformal_quantile(&ks, a(alpha), Rank::Marginal).unwrap().value().max(0.0);
                    test_idx
                        .iter()
                        .map(|&j| {
                            let mut d = s_(j).mapv(|x| x > 0.0);
                            if k.is_infinite() {
                                d.fill(true);
                            } else {
                                for _ in 0..k as usize {
                                    d = dilate(&d, metric);
                                }
                            }
                            (Array2::from_elem((12, 14), false), d)
                        })
                        .collect()
                }
                _ => unreachable!(),
            };
            brute.split(&sets, &truths, &spacing);
        }
        brute.check(r);
    }
}

#[test]
fn synthetic_coverage_holds_and_risk_control_undercovers() {
    let n_pool = 1200;
    let (scores, masks) = Synthetic::new([16, 16]).seed(2024).stack(0..n_pool);
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0).unwrap();
    let n_cal = 400;
    let alphas = [0.1, 0.2];
    let methods = [
        Method::Conformal(Levels::new(ModeKind::Max)),
        Method::Conformal(Levels::bonferroni(1.0, 4.0)),
        Method::Conformal(Levels::new(ModeKind::Marginal)),
        Method::RiskControl,
        Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
    ];
    let reports =
        Validation::new(alphas.iter().map(|&x| a(x)).collect(), Splits::new(n_cal, 200, 5).unwrap())
            .with_geometry(Geometry::Off)
            .run(&pool, &methods)
            .unwrap();
    let get = |m: usize, ai: usize| &reports[m * alphas.len() + ai];
    for (ai, &alpha) in alphas.iter().enumerate() {
        // The mean over splits of one pool varies across pools like a
        // coverage estimated on n_pool images: binomial standard error.
        let se = (alpha * (1.0 - alpha) / n_pool as f64).sqrt();
        let tol = 4.0 * se;
        let upper = 1.0 / (n_cal as f64 + 1.0);
        let max = get(0, ai);
        assert!(max.joint_coverage >= 1.0 - alpha - tol, "max: {}", max.joint_coverage);
        assert!(max.joint_coverage <= 1.0 - alpha + upper + tol, "max: {}", max.joint_coverage);
        let bonf = get(1, ai);
        assert!(bonf.joint_coverage >= 1.0 - alpha - tol, "bonferroni: {}", bonf.joint_coverage);
        let marg = get(2, ai);
        for c in [marg.inner_coverage, marg.outer_coverage] {
            assert!(c >= 1.0 - alpha - tol && c <= 1.0 - alpha + upper + tol, "marginal {c}");
        }
        // risk control: its own guarantee holds (E[FNR] <= alpha), whole-mask coverage does not
        let rc = get(3, ai);
        assert!(rc.efficiency.outer_missed_fraction <= alpha + 4.0 * 0.5 / (n_pool as f64).sqrt());
        assert!(rc.outer_coverage < 1.0 - alpha - tol, "risk control covers {}", rc.outer_coverage);
        assert!(rc.outer_coverage < max.joint_coverage - tol);
        // pixel-wise Bonferroni: valid and conservative
        let px = get(4, ai);
        assert!(px.joint_coverage > bonf.joint_coverage + tol, "pixelwise {}", px.joint_coverage);
        assert!(px.efficiency.outer_share > bonf.efficiency.outer_share);
    }
}

/// A transform that throws the scores away: the worst candidate on both sides.
#[derive(Clone)]
struct Flat;

impl Transform for Flat {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        _spacing: &Spacing,
    ) -> confseg::Result<CowArray<'a, A, D>> {
        Ok(CowArray::from(ndarray::Array::zeros(scores.raw_dim())))
    }
    fn describe(&self) -> String {
        "flat".into()
    }
}

#[derive(Clone)]
enum Candidate {
    Id,
    Flat,
}

impl Transform for Candidate {
    fn apply<'a, A: Float, D: Dimension>(
        &self,
        scores: &'a ArrayRef<A, D>,
        spacing: &Spacing,
    ) -> confseg::Result<CowArray<'a, A, D>> {
        match self {
            Candidate::Id => Identity.apply(scores, spacing),
            Candidate::Flat => Flat.apply(scores, spacing),
        }
    }
    fn describe(&self) -> String {
        match self {
            Candidate::Id => "identity".into(),
            Candidate::Flat => "flat".into(),
        }
    }
}

#[test]
fn selection_ranks_and_suggests_weights() {
    let (scores, masks) = Synthetic::new([16, 16]).seed(8).stack(0..120);
    let cands = [Candidate::Flat, Candidate::Id];
    let splits = Splits::new(80, 30, 2).unwrap();
    let s = select(&cands, &cands, &scores, &masks, &Calibrator::new((), ()), a(0.1), splits).unwrap();
    assert_eq!(s.inner_transform, "identity");
    assert_eq!(s.outer_transform, "identity");
    assert_eq!(s.inner_ranking[1].transform, "flat");
    assert_eq!(s.inner_ranking[1].share, 0.0); // flat inner set is empty
    assert_eq!(s.outer_ranking[1].share, 1.0); // flat outer set is everything
                                               // the suggestion is the grid minimum, and it is what a direct validation reports
    let best = s.weights.iter().map(|w| w.undecided_share).fold(f64::INFINITY, f64::min);
    let chosen = s
        .weights
        .iter()
        .find(|w| w.inner_weight == s.inner_weight && w.outer_weight == s.outer_weight)
        .unwrap();
    assert_eq!(chosen.undecided_share, best);
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0).unwrap();
    let r = Validation::new(vec![a(0.1)], splits)
        .with_geometry(Geometry::Off)
        .run(&pool, &[Method::Conformal(Levels::bonferroni(s.inner_weight, s.outer_weight))])
        .unwrap();
    assert!((r[0].efficiency.outer_share - r[0].efficiency.inner_share - best).abs() < 1e-12);
    assert!(select::<Candidate, f64, _, bool, (), ()>(
        &[],
        &cands,
        &scores,
        &masks,
        &Calibrator::new((), ()),
        a(0.1),
        splits
    )
    .is_err());
}

#[test]
fn bad_input_is_reported() {
    let (mut scores, masks) = toy();
    let cal = Calibrator::new(Identity, Identity);
    let pool = Pool::new(&cal, &scores, &masks, 0.0).unwrap();
    // pool too small for the split
    let e = Validation::new(vec![a(0.1)], Splits::new(60, 2, 0).unwrap()).run(&pool, &[Method::RiskControl]);
    assert!(matches!(e, Err(Error::InvalidParameter { name: "n_cal", .. })));
    assert!(Validation::new(vec![], Splits::new(10, 2, 0).unwrap()).run(&pool, &[]).is_err());
    // max mode has no split for the pixel-wise baseline
    let e = Validation::new(vec![a(0.1)], Splits::new(10, 2, 0).unwrap())
        .run(&pool, &[Method::PixelwiseBonferroni(Levels::new(ModeKind::Max))]);
    assert!(e.is_err());
    // NaN names the image and voxel
    scores[[7, 3, 4]] = f64::NAN;
    let e = Pool::new(&cal, &scores, &masks, 0.0).unwrap_err();
    assert_eq!(e, Error::NanScore { what: "scores", image: Some(7), index: vec![3, 4] });
    let e = Pool::new(&cal, &scores.slice(ndarray::s![.., .., 1..]), &masks, 0.0).unwrap_err();
    assert!(matches!(e, Error::ShapeMismatch { .. }));
    assert!(Pool::new(&cal, &masks.mapv(|b| f64::from(u8::from(b))), &masks, f64::NAN).is_err());
    let sub = pool.subset(&[0, 5, 9]).unwrap();
    assert_eq!(sub.len(), 3);
    assert_eq!(sub.statistics().get(1), pool.statistics().get(5));
    assert!(pool.subset(&[60]).is_err());
}

#[test]
fn pool_from_transformed_equals_pool_from_transforms() {
    let (scores, masks) = toy();
    let cal = Calibrator::new(Identity, confseg::Sigmoid);
    let p1 = Pool::new(&cal, &scores, &masks, 0.0).unwrap();
    let p2 = Pool::from_transformed(
        &Calibrator::new(Identity, Identity),
        &scores,
        &scores.mapv(|x| 1.0 / (1.0 + (-x).exp())),
        &masks,
        0.5,
    )
    .unwrap();
    let v = Validation::new(vec![a(0.2)], Splits::new(40, 10, 1).unwrap());
    let m = [Method::Conformal(Levels::bonferroni(1.0, 1.0))];
    let (r1, r2) = (v.run(&p1, &m).unwrap(), v.run(&p2, &m).unwrap());
    assert_eq!(r1[0].joint_coverage, r2[0].joint_coverage);
    assert_eq!(r1[0].efficiency.outer_share, r2[0].efficiency.outer_share);
}

#[cfg(feature = "plot")]
#[test]
fn figures_are_written() {
    use confseg::plot::{coverage_plot, coverage_series, overlay, overlay_slice, CoverageKind};
    let dir = tempfile::tempdir().unwrap();
    let (scores, masks) = toy();
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0).unwrap();
    let reports = Validation::new(vec![a(0.1), a(0.2), a(0.3)], Splits::new(30, 5, 1).unwrap())
        .with_geometry(Geometry::Off)
        .run(&pool, &[Method::Conformal(Levels::new(ModeKind::Max)), Method::RiskControl])
        .unwrap();
    let series = coverage_series(&reports, CoverageKind::Joint);
    assert_eq!(series.len(), 2);
    let png = dir.path().join("coverage.png");
    coverage_plot(&png, &series, "coverage").unwrap();
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    let svg = dir.path().join("coverage.svg");
    coverage_plot(&svg, &series, "coverage").unwrap();
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("risk-control fnr"));
    // overlays, 2-D and a 3-D slice
    let data = Synthetic::new([10, 12, 8]).seed(1);
    let cal = Calibrator::new(Identity, Identity);
    let mut c = Calibration::new();
    for (s, m) in data.pairs(0..40) {
        cal.observe(&mut c, &s, &m).unwrap();
    }
    let fitted = cal.fit(&c, confseg::Mode::max(a(0.2))).unwrap();
    let (s, m) = data.pair(100);
    let sets = fitted.predict(&s).unwrap();
    let p = dir.path().join("slice.png");
    overlay_slice(&p, &s, &m, &sets, Axis(2), 4, "slice").unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() > 1000);
    assert!(overlay_slice(&p, &s, &m, &sets, Axis(2), 8, "slice").is_err());
    let s2 = scores.index_axis(Axis(0), 0);
    let m2 = masks.index_axis(Axis(0), 0);
    let sets2 = confseg::Sets { inner: m2.to_owned(), outer: m2.to_owned() };
    overlay(dir.path().join("o.svg"), &s2, &m2, &sets2, "o").unwrap();
    // no temporary files left behind
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.contains("partial")), "{names:?}");
}

#[cfg(feature = "cli")]
mod cli {
    use super::*;
    use std::path::Path;
    use std::process::{Command, Output};

    fn run(args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_confseg")).args(args).output().expect("the binary runs")
    }

    fn write_toy(dir: &Path) -> (String, String) {
        let (scores, masks) = toy();
        let s = dir.join("scores.npy");
        let m = dir.join("masks.npy");
        confseg::io::write_array(&s, &scores).unwrap();
        confseg::io::write_masks(&m, &masks).unwrap();
        (s.display().to_string(), m.display().to_string())
    }

    #[test]
    fn validate_json_equals_the_library_and_plots() {
        let dir = tempfile::tempdir().unwrap();
        let (s, m) = write_toy(dir.path());
        let png = dir.path().join("cov.png");
        let out = run(&[
            "validate",
            "--masks",
            &m,
            "--scores",
            &s,
            "--n-cal",
            "40",
            "--repeats",
            "30",
            "--seed",
            "3",
            "--alpha",
            "0.1,0.2",
            "--mode",
            "bonferroni",
            "--weights",
            "1:4",
            "--method",
            "conformal,risk-control",
            "--json",
            "--plot",
            png.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let list = json.as_array().unwrap();
        assert_eq!(list.len(), 4);
        let (scores, masks) = toy();
        let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0).unwrap();
        let want = Validation::new(vec![a(0.1), a(0.2)], Splits::new(40, 30, 3).unwrap())
            .run(&pool, &[Method::Conformal(Levels::bonferroni(1.0, 4.0)), Method::RiskControl])
            .unwrap();
        for (got, want) in list.iter().zip(&want) {
            assert_eq!(got["alpha"].as_f64().unwrap(), want.alpha);
            assert_eq!(got["method"].as_str().unwrap(), want.method);
            for key in ["inner_coverage", "outer_coverage", "joint_coverage"] {
                let w = match key {
                    "inner_coverage" => want.inner_coverage,
                    "outer_coverage" => want.outer_coverage,
                    _ => want.joint_coverage,
                };
                assert!((got[key].as_f64().unwrap() - w).abs() < 1e-12, "{key}");
            }
        }
        assert_eq!(&std::fs::read(&png).unwrap()[..4], b"\x89PNG");
    }

    #[test]
    fn validate_and_select_report_bad_input_without_backtrace() {
        let dir = tempfile::tempdir().unwrap();
        let (s, m) = write_toy(dir.path());
        let out = run(&["validate", "--masks", &m, "--scores", &s, "--n-cal", "60", "--alpha", "0.1"]);
        assert_eq!(out.status.code(), Some(1));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("n_cal") && err.contains("60 images"), "{err}");
        assert!(!err.contains("panicked") && !err.contains("backtrace"));
        let out = run(&["validate", "--masks", &m, "--scores", &s, "--n-cal", "30", "--alpha", "1.5"]);
        assert_eq!(out.status.code(), Some(2));
        let out = run(&[
            "validate", "--masks", &m, "--scores", &s, "--n-cal", "30", "--alpha", "0.1", "--plot", "x.gif",
        ]);
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains(".png or .svg"));
        assert!(!Path::new("x.gif").exists());
    }

    #[test]
    fn select_suggests_calibrate_options_and_predict_draws_overlays() {
        let dir = tempfile::tempdir().unwrap();
        let (s, m) = write_toy(dir.path());
        let json = dir.path().join("sel.json");
        let out = run(&[
            "select",
            "--masks",
            &m,
            "--scores",
            &s,
            "--inner-candidates",
            "identity,sigmoid",
            "--outer-candidates",
            "identity",
            "--alpha",
            "0.2",
            "--repeats",
            "10",
            "--json",
            json.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("suggested: confseg calibrate --inner"), "{text}");
        let sel: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert_eq!(sel["outer_transform"], "identity");
        assert_eq!(sel["weights"].as_array().unwrap().len(), 9);

        let cal = dir.path().join("cal.json");
        let out = run(&[
            "calibrate",
            "--masks",
            &m,
            "--scores",
            &s,
            "--alpha",
            "0.2",
            "--mode",
            "max",
            "-o",
            cal.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let ov = dir.path().join("overlays");
        let out = run(&[
            "predict",
            "--calibration",
            cal.to_str().unwrap(),
            "--scores",
            &s,
            "--overlay-dir",
            ov.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let n = std::fs::read_dir(&ov)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "png"))
            .count();
        assert_eq!(n, 60);
    }
}

/// The morphological margin is the outer set of the city-block signed
/// distance of the predicted mask (midpoint convention) whenever the
/// calibrated margin is positive: same sets, so same coverage and sizes.
#[test]
fn morphological_city_block_equals_signed_distance_outer_sets() {
    let (scores, masks) = Synthetic::new([20, 20]).seed(17).stack(0..200);
    let dist: confseg::ScoreTransform = "distance:cityblock".parse().unwrap();
    let pool = Pool::new(&Calibrator::new(Identity, dist), &scores, &masks, 0.0).unwrap();
    let v = Validation::new(vec![a(0.05), a(0.1), a(0.2)], Splits::new(120, 50, 4).unwrap());
    let r = v
        .run(
            &pool,
            &[
                Method::Conformal(Levels::new(ModeKind::Marginal)),
                Method::Morphological(Footprint::Face, Rank::Marginal),
            ],
        )
        .unwrap();
    for k in 0..3 {
        let (ours, morph) = (&r[k], &r[3 + k]);
        assert_eq!(ours.outer_coverage, morph.outer_coverage, "alpha {}", ours.alpha);
        assert_eq!(ours.efficiency.outer_share, morph.efficiency.outer_share, "alpha {}", ours.alpha);
        assert_eq!(ours.efficiency.outer_diameter_ratio, morph.efficiency.outer_diameter_ratio);
        // not vacuous: a real margin, neither the prediction nor the whole image
        assert!(morph.efficiency.outer_share < 0.5 && morph.efficiency.over_covered > 0.0);
        assert!(morph.outer_coverage > 0.75 && morph.outer_coverage < 0.99);
    }
}

#[test]
fn public_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Pool>();
    check::<Validation>();
    check::<Report>();
    check::<Method>();
    check::<Splits>();
    check::<confseg::evaluate::select::Selection>();
}

/// `select` compares candidates under the settings' tolerances: a 10%
/// outer tolerance gives every candidate a smaller outer set than
/// containment does.
#[test]
fn selection_ranks_for_the_settings_tolerance() {
    use confseg::tolerance::Tolerances;
    let (scores, masks) = Synthetic::new([16, 16]).seed(8).stack(0..90);
    let cands = [confseg::ScoreTransform::Identity, confseg::ScoreTransform::Sigmoid];
    let splits = Splits::new(60, 10, 2).unwrap();
    let strict = select(&cands, &cands, &scores, &masks, &Calibrator::new((), ()), a(0.1), splits).unwrap();
    let tolerant =
        Calibrator::new((), ()).with_tolerances(Tolerances::new(Default::default(), "0.1".parse().unwrap()));
    let loose = select(&cands, &cands, &scores, &masks, &tolerant, a(0.1), splits).unwrap();
    for (s, l) in strict.outer_ranking.iter().zip(&loose.outer_ranking) {
        assert!(l.share < s.share, "{}: {} vs {}", s.transform, l.share, s.share);
    }
}
