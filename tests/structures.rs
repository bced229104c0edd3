//! Several structures with one joint guarantee (METHOD.md §4.1), tested
//! statistically as in `tests/coverage.rs`: seeded replications on
//! synthetic exchangeable data, tolerances from the standard error.
//!
//! Two structures: A (label 1, or 3 where both) and B (label 2, or 3), each
//! from its own synthetic image, given as two score channels. With the max
//! mode, every structure is covered on both sides iff
//! `max_k max(tau_k, gamma_k) <= lambda`, a continuous statistic, so the
//! joint coverage of the rank-k threshold is exactly `k/(n+1)` in
//! expectation; the Bonferroni split is checked against its lower bound and
//! each structure's marginal coverage against `k/(n+1)`.

use confseg::calibrate::{StructureCalibration, StructureCalibrator};
use confseg::levels::JointMode;
use confseg::mask::Structure;
use confseg::synthetic::Synthetic;
use confseg::transform::StructureScores;
use confseg::{Alpha, Calibrator, Identity};
use ndarray::{stack, Array2, Array3, Axis};

fn beta_var(k: usize, n: usize) -> f64 {
    let (a, b) = (k as f64, (n + 1 - k) as f64);
    a * b / ((a + b).powi(2) * (a + b + 1.0))
}

/// k = ceil((1 - alpha)(n + 1)) with alpha in hundredths, by integers.
fn rank(alpha: f64, n: usize) -> usize {
    let percent = (alpha * 100.0).round() as usize;
    ((100 - percent) * (n + 1)).div_ceil(100)
}

fn tolerance(alpha: f64, n: usize, m: usize, reps: usize) -> f64 {
    let p = 1.0 - alpha;
    4.0 * ((beta_var(rank(alpha, n), n) + p * (1.0 - p) / m as f64) / reps as f64).sqrt()
}

/// Image `i`: two score channels and the label map of the two structures.
fn image(a: &Synthetic<ndarray::Ix2>, b: &Synthetic<ndarray::Ix2>, i: usize) -> (Array3<f64>, Array2<u8>) {
    let (sa, ma) = a.pair(i);
    let (sb, mb) = b.pair(i);
    let labels = Array2::from_shape_fn(ma.dim(), |v| u8::from(ma[v]) + 2 * u8::from(mb[v]));
    (stack(Axis(0), &[sa.view(), sb.view()]).unwrap(), labels)
}

struct Coverage {
    joint: f64,
    each: [[f64; 2]; 2],
}

fn estimate(mode: impl Fn() -> JointMode, n: usize, m: usize, reps: usize, seed: u64) -> Coverage {
    let structures: Vec<Structure> = vec!["A=1,3".parse().unwrap(), "B=2,3".parse().unwrap()];
    let sc = StructureCalibrator::new(
        Calibrator::new(Identity, Identity),
        structures.clone(),
        StructureScores::Channels { axis: 0 },
    )
    .unwrap();
    let (a, b) = (Synthetic::new([12, 12]).seed(seed), Synthetic::new([12, 12]).seed(seed + 1000));
    let (mut joint, mut each) = (0usize, [[0usize; 2]; 2]);
    for r in 0..reps {
        let base = r * (n + m);
        let mut cal = StructureCalibration::new(&structures);
        for i in base..base + n {
            let (out, labels) = image(&a, &b, i);
            sc.observe(&mut cal, &out, None, &labels).unwrap();
        }
        let sets = sc.fit(&cal, mode()).unwrap();
        for i in base + n..base + n + m {
            let (out, labels) = image(&a, &b, i);
            let p = sets.predict(&out, None).unwrap();
            let mut all = true;
            for (k, s) in structures.iter().enumerate() {
                let c = p[k].coverage(&s.labels().binarize(&labels).unwrap()).unwrap();
                each[k][0] += usize::from(c.inner);
                each[k][1] += usize::from(c.outer);
                all &= c.joint();
            }
            joint += usize::from(all);
        }
    }
    let t = (reps * m) as f64;
    Coverage { joint: joint as f64 / t, each: each.map(|s| s.map(|c| c as f64 / t)) }
}

const M: usize = 50;
const REPS: usize = 1000;

#[test]
fn max_mode_covers_every_structure_jointly_and_tightly() {
    for (seed, n, alpha) in [(1u64, 19usize, 0.1), (2, 39, 0.2)] {
        let e = estimate(|| JointMode::max(Alpha::new(alpha).unwrap(), 2), n, M, REPS, seed);
        let expected = rank(alpha, n) as f64 / (n as f64 + 1.0);
        let tol = tolerance(alpha, n, M, REPS);
        assert!(tol < 0.5 / (n as f64 + 1.0), "the tolerance must catch an off-by-one rank");
        assert!((e.joint - expected).abs() <= tol, "joint {:.4}, expected {expected:.4} ± {tol:.4}", e.joint);
    }
}

#[test]
fn bonferroni_over_structures_and_sides_keeps_the_joint_level() {
    // alpha = 0.2 split 1:4 per structure: 0.02 / 0.08 each; n = 49 suffices for 0.02
    let n = 49;
    let mode = || JointMode::bonferroni(Alpha::new(0.2).unwrap(), &[(1.0, 4.0), (1.0, 4.0)]).unwrap();
    let e = estimate(mode, n, M, REPS, 3);
    let tol = tolerance(0.2, n, M, REPS);
    assert!(e.joint >= 0.8 - tol, "joint {:.4} below 0.8 - {tol:.4}", e.joint);
    // each side at its own level, exactly
    for k in 0..2 {
        for (side, a) in [(0, 0.02), (1, 0.08)] {
            let expected = rank(a, n) as f64 / (n as f64 + 1.0);
            let t = tolerance(a, n, M, REPS);
            assert!(
                (e.each[k][side] - expected).abs() <= t,
                "structure {k} side {side}: {:.4} vs {expected:.4} ± {t:.4}",
                e.each[k][side]
            );
        }
    }
}

#[test]
fn marginal_mode_covers_each_structure_at_its_level() {
    let (n, alpha) = (19, 0.1);
    let e = estimate(|| JointMode::marginal(Alpha::new(alpha).unwrap(), 2), n, M, REPS, 4);
    let expected = rank(alpha, n) as f64 / (n as f64 + 1.0);
    let tol = tolerance(alpha, n, M, REPS);
    for k in 0..2 {
        for side in 0..2 {
            assert!((e.each[k][side] - expected).abs() <= tol, "{k}/{side}: {:.4}", e.each[k][side]);
        }
    }
    // no joint statement: four marginal events at 0.1 cover jointly less than 0.9
    assert!(e.joint < 1.0 - alpha - tol, "joint {:.4}", e.joint);
}
