//! Diagnostics by stratum (issue 19 item 4) against an independent
//! computation: per split, sets fitted by the calibrator on the split's
//! calibration images and checked on each test image by
//! `ConfidenceSets::predict` and `Sets::coverage`; strata by a direct
//! reading of the documented rules; components by a recursive flood fill.

use confseg::calibrate::RiskCalibration;
use confseg::evaluate::diagnostics::{diagnose, StrataSpec};
use confseg::evaluate::{Pool, Splits};
use confseg::groups::{Edges, Group};
use confseg::levels::{Guarantee, ModeKind};
use confseg::risk::Risk;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Identity, Levels, Mode};
use ndarray::{concatenate, Array2, Array3, Axis};

const N: usize = 80;

/// Images of two objects side by side (so that there are several components).
fn data() -> (Array3<f64>, Array3<bool>) {
    let (a, ma) = Synthetic::new([10, 10]).seed(4).stack(0..N);
    let (b, mb) = Synthetic::new([10, 10]).seed(9).stack(0..N);
    (concatenate![Axis(2), a, b], concatenate![Axis(2), ma, mb])
}

fn flood(set: &Array2<bool>, seen: &mut Array2<bool>, p: (usize, usize), out: &mut Vec<(usize, usize)>) {
    if !set[p] || seen[p] {
        return;
    }
    seen[p] = true;
    out.push(p);
    let (h, w) = set.dim();
    if p.0 > 0 {
        flood(set, seen, (p.0 - 1, p.1), out);
    }
    if p.0 + 1 < h {
        flood(set, seen, (p.0 + 1, p.1), out);
    }
    if p.1 > 0 {
        flood(set, seen, (p.0, p.1 - 1), out);
    }
    if p.1 + 1 < w {
        flood(set, seen, (p.0, p.1 + 1), out);
    }
}

fn components(set: &Array2<bool>) -> Vec<Vec<(usize, usize)>> {
    let mut seen = Array2::from_elem(set.dim(), false);
    let mut out = Vec::new();
    for p in ndarray::indices(set.dim()) {
        let mut c = Vec::new();
        flood(set, &mut seen, p, &mut c);
        if !c.is_empty() {
            out.push(c);
        }
    }
    out
}

/// Quintile (0-based) of each value by the documented rule.
fn quintile(values: &[f64]) -> Vec<usize> {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let e: Vec<f64> = (1..=4).map(|k: usize| v[(k * n).div_ceil(5) - 1]).collect();
    values.iter().map(|&x| e.iter().filter(|&&y| y < x).count()).collect()
}

#[test]
fn per_stratum_coverage_and_component_shares_equal_a_direct_recomputation() {
    let (scores, masks) = data();
    let c = Calibrator::new(Identity, Identity);
    let pool = Pool::new(&c, &scores, &masks, 0.0).unwrap();
    let alpha = Alpha::new(0.2).unwrap();
    let splits = Splits::new(40, 30, 11).unwrap();
    let groups: Vec<Group> = (0..N).map(|i| Group::Id((i % 3) as i64)).collect();
    let edges = Edges::new(vec![40.0, 80.0]).unwrap();
    let spec = StrataSpec { groups: Some(groups.clone()), volume_edges: Some(edges), lesion_splits: 4 };
    let levels = Levels { mode: ModeKind::Max, ..Levels::default() };
    let d = diagnose(&pool, &levels, alpha, splits, &spec).unwrap();

    // per image: tests, inner/outer/joint events, inner/outer sizes
    let mut per = vec![[0u64; 6]; N];
    let (mut true_c, mut true_in, mut inner_c, mut inner_in) = (0u64, 0u64, 0u64, 0u64);
    for (r, (cal, test)) in splits.iter(N).unwrap().enumerate() {
        let sc = scores.select(Axis(0), &cal);
        let mc = masks.select(Axis(0), &cal);
        let sets = c.fit(&c.calibrate_stack(&sc, &mc).unwrap(), Mode::max(alpha)).unwrap();
        for &j in &test {
            let y = masks.index_axis(Axis(0), j).to_owned();
            let set = sets.predict(&scores.index_axis(Axis(0), j)).unwrap();
            let cov = set.coverage(&y).unwrap();
            let p = &mut per[j];
            p[0] += 1;
            p[1] += u64::from(cov.inner);
            p[2] += u64::from(cov.outer);
            p[3] += u64::from(cov.inner && cov.outer);
            p[4] += set.inner.iter().filter(|&&b| b).count() as u64;
            p[5] += set.outer.iter().filter(|&&b| b).count() as u64;
            for comp in components(&y) {
                true_c += 1;
                true_in += u64::from(comp.iter().all(|&q| set.outer[q]));
            }
            if r < 4 {
                for comp in components(&set.inner) {
                    inner_c += 1;
                    inner_in += u64::from(comp.iter().all(|&q| y[q]));
                }
            }
        }
    }
    let check = |rows: &[confseg::evaluate::diagnostics::StratumRow], strata: &[usize], what: &str| {
        let mut k = 0;
        for s in 0..=*strata.iter().max().unwrap() {
            let members: Vec<usize> = (0..N).filter(|&j| strata[j] == s).collect();
            if members.is_empty() {
                continue;
            }
            let sum = |f: usize| members.iter().map(|&j| per[j][f]).sum::<u64>();
            let r = &rows[k];
            k += 1;
            assert_eq!(r.images, members.len(), "{what} {s}");
            assert_eq!(
                (r.tests, r.inner_covered, r.outer_covered, r.joint_covered),
                (sum(0), sum(1), sum(2), sum(3)),
                "{what} {}",
                r.stratum
            );
            assert_eq!(r.joint_coverage, sum(3) as f64 / sum(0) as f64);
            assert!((r.mean_inner_voxels - sum(4) as f64 / sum(0) as f64).abs() < 1e-9);
            assert!((r.mean_outer_voxels - sum(5) as f64 / sum(0) as f64).abs() < 1e-9);
        }
        assert_eq!(k, rows.len(), "{what}");
    };
    let g: Vec<usize> = (0..N).map(|i| i % 3).collect();
    check(d.groups.as_ref().unwrap(), &g, "group");
    let sizes: Vec<f64> =
        (0..N).map(|j| masks.index_axis(Axis(0), j).iter().filter(|&&b| b).count() as f64).collect();
    check(&d.true_size, &quintile(&sizes), "true size");
    assert_eq!(d.true_size.len(), 5);
    let vol: Vec<usize> = (0..N)
        .map(|j| {
            let v = scores.index_axis(Axis(0), j).iter().filter(|&&x| x > 0.0).count() as f64;
            usize::from(v >= 40.0) + usize::from(v >= 80.0)
        })
        .collect();
    check(&d.predicted_volume, &vol, "predicted volume");
    let l = &d.lesions;
    assert_eq!((l.true_components, l.true_inside_outer), (true_c, true_in));
    assert_eq!((l.inner_components, l.inner_in_truth, l.inner_splits), (inner_c, inner_in, 4));
    assert!(true_c > 2 * 30 * (N as u64 - 40) / 2, "several components per image: {true_c}");
    assert!(inner_c > 0 && inner_in > 0);
    let table = confseg::evaluate::diagnostics::diagnostics_table(&d);
    assert!(table.contains("Q1: true size") && table.contains("lesions:"), "{table}");
}

/// Risk control's diagnostics against the same direct recomputation: per
/// split, the sets the calibrator's risk control fits on the split's
/// calibration images (recall by conformal risk control, precision by
/// Learn-then-Test), and per group the events, the mean missed share of the
/// object by the outer set and the mean false share of the inner set,
/// counted on the predicted sets.
#[test]
fn risk_control_diagnostics_equal_a_direct_recomputation() {
    let (scores, masks) = data();
    let c = Calibrator::new(Identity, Identity);
    let pool = Pool::new(&c, &scores, &masks, 0.0).unwrap();
    let alpha = Alpha::new(0.2).unwrap();
    let splits = Splits::new(40, 20, 5).unwrap();
    let groups: Vec<Group> = (0..N).map(|i| Group::Id((i % 2) as i64)).collect();
    let spec = StrataSpec { groups: Some(groups), ..StrataSpec::default() };
    let recall = Levels::new(ModeKind::RiskControl);
    let precision =
        Levels { risk: Some(Risk::Precision), delta: Some(0.2), ..Levels::new(ModeKind::RiskControl) };
    for levels in [recall, precision] {
        let d = diagnose(&pool, &levels, alpha, splits, &spec).unwrap();
        let Guarantee::RiskControl(level) = levels.at(alpha).unwrap() else { unreachable!() };
        // per image: tests, inner and outer events, summed missed and false shares
        let mut per = vec![(0u64, 0u64, 0u64, 0.0f64, 0.0f64); N];
        for (cal, test) in splits.iter(N).unwrap() {
            let mut state = RiskCalibration::for_risk(level.risk());
            for &i in &cal {
                c.observe_risk(&mut state, &scores.index_axis(Axis(0), i), &masks.index_axis(Axis(0), i))
                    .unwrap();
            }
            let sets = c.fit_risk_control(&state, level).unwrap();
            for &j in &test {
                let y = masks.index_axis(Axis(0), j);
                let set = sets.predict(&scores.index_axis(Axis(0), j)).unwrap();
                let cov = set.coverage(&y).unwrap();
                let count = |a: &ndarray::Array2<bool>, f: &dyn Fn(bool, bool) -> bool| {
                    a.iter().zip(&y).filter(|&(&a, &y)| f(a, y)).count() as f64
                };
                let n_y = y.iter().filter(|&&b| b).count() as f64;
                let missed = if n_y == 0.0 { 0.0 } else { count(&set.outer, &|o, y| y && !o) / n_y };
                let n_i = count(&set.inner, &|i, _| i);
                let false_share = if n_i == 0.0 { 0.0 } else { count(&set.inner, &|i, y| i && !y) / n_i };
                let p = &mut per[j];
                *p = (
                    p.0 + 1,
                    p.1 + u64::from(cov.inner),
                    p.2 + u64::from(cov.outer),
                    p.3 + missed,
                    p.4 + false_share,
                );
            }
        }
        let rows = d.groups.as_ref().unwrap();
        assert_eq!(rows.len(), 2);
        for (g, r) in rows.iter().enumerate() {
            let members = (0..N).filter(|j| j % 2 == g);
            let (mut t, mut ic, mut oc, mut ms, mut fs) = (0, 0, 0, 0.0, 0.0);
            for j in members {
                let p = per[j];
                (t, ic, oc, ms, fs) = (t + p.0, ic + p.1, oc + p.2, ms + p.3, fs + p.4);
            }
            assert_eq!((r.tests, r.inner_covered, r.outer_covered), (t, ic, oc), "{levels} group {g}");
            assert!((r.mean_missed_share - ms / t as f64).abs() < 1e-12, "{levels} group {g}");
            assert!((r.mean_false_share - fs / t as f64).abs() < 1e-12, "{levels} group {g}");
        }
        // each risk's own loss is what is controlled: not trivially zero, and near alpha overall
        let all: Vec<_> = d.true_size.iter().collect();
        let tests: u64 = all.iter().map(|r| r.tests).sum();
        let mean = |f: &dyn Fn(&&confseg::evaluate::diagnostics::StratumRow) -> f64| {
            all.iter().map(|r| f(r) * r.tests as f64).sum::<f64>() / tests as f64
        };
        let loss = match level.risk() {
            Risk::Recall => mean(&|r| r.mean_missed_share),
            Risk::Precision => mean(&|r| r.mean_false_share),
        };
        assert!(loss > 0.02 && loss < 0.3, "{levels}: mean loss {loss}");
    }
}

#[test]
fn wrong_group_counts_are_refused() {
    let (scores, masks) = data();
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0).unwrap();
    let splits = Splits::new(40, 5, 1).unwrap();
    let alpha = Alpha::new(0.1).unwrap();
    let spec = StrataSpec { groups: Some(vec![Group::Id(1); 3]), ..StrataSpec::default() };
    let e = diagnose(&pool, &Levels::default(), alpha, splits, &spec).unwrap_err().to_string();
    assert!(e.contains("groups") && e.contains(&N.to_string()), "{e}");
}
