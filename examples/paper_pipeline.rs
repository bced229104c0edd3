//! The paper's pipeline on synthetic data: identity inner transform,
//! signed-distance outer transform, alpha = 0.1 split 1:4 (inner:outer) for
//! 90% joint coverage; compared with raw logits for the outer set.
//!
//! ```text
//! cargo run --release --example paper_pipeline
//! ```

use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Identity, Metric, Mode, SignedDistance, Transform};

fn run<TO: Transform + Clone + Sync>(
    name: &str,
    outer: TO,
    data: &Synthetic<ndarray::Ix2>,
) -> confseg::Result<()> {
    let calibrator = Calibrator::new(Identity, outer);
    let (cal_scores, cal_masks) = data.stack(0..1000);
    let cal = calibrator.calibrate_stack(&cal_scores, &cal_masks)?;
    let mode = Mode::bonferroni(Alpha::new(0.1)?, 1.0, 4.0)?;
    let sets = calibrator.fit(&cal, mode)?;
    let (mut inner_ok, mut outer_ok, mut joint_ok) = (0, 0, 0);
    let (mut inner_size, mut outer_size, mut truth_size) = (0usize, 0usize, 0usize);
    let test = 1000..3000;
    for (scores, truth) in data.pairs(test.clone()) {
        let pred = sets.predict(&scores)?;
        let c = pred.coverage(&truth)?;
        inner_ok += usize::from(c.inner);
        outer_ok += usize::from(c.outer);
        joint_ok += usize::from(c.joint());
        inner_size += pred.inner.iter().filter(|&&b| b).count();
        outer_size += pred.outer.iter().filter(|&&b| b).count();
        truth_size += truth.iter().filter(|&&b| b).count();
    }
    let m = test.len() as f64;
    println!(
        "{name:<28} lambda_I = {:>7.3}  lambda_O = {:>7.3}  coverage I⊆Y {:.3}  Y⊆O {:.3}  I⊆Y⊆O {:.3}  |I|/|Y| {:.2}  |O|/|Y| {:.2}",
        sets.thresholds().inner.value(),
        sets.thresholds().outer.value(),
        inner_ok as f64 / m,
        outer_ok as f64 / m,
        joint_ok as f64 / m,
        inner_size as f64 / truth_size as f64,
        outer_size as f64 / truth_size as f64,
    );
    Ok(())
}

fn main() -> confseg::Result<()> {
    let data = Synthetic::new([64, 64]).seed(7);
    println!(
        "1000 calibration, 2000 test images (64x64); alpha = 0.1 split 1:4; guarantee P(I ⊆ Y ⊆ O) >= 0.9"
    );
    run("identity / signed distance", SignedDistance::new(Metric::Euclidean), &data)?;
    run("identity / identity", Identity, &data)?;
    Ok(())
}
