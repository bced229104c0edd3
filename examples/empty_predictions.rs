//! What to do when the network predicts nothing: the three `:empty=`
//! policies of the distance transform, compared on synthetic data where one
//! image in twelve has an empty predicted mask (its scores shifted below
//! the mask threshold; the polyp data has 86 such images in 1500).
//!
//! Every policy is valid — the transform is fixed before calibration — so
//! every row covers at `1 - alpha`. They differ in the outer set:
//!
//! * `-inf` (the paper): an empty prediction has `gamma = +inf`. If more
//!   than an `alpha` share of the images are like that, `lambda_O = +inf`
//!   and every image's outer set is the whole image.
//! * a constant `c`: `gamma = -c` for those images, so they count like an
//!   ordinary image whose object is `-c` away; their own outer set is all
//!   or nothing.
//! * `argmax`: the distance to the most confident voxel — the prediction
//!   falls back to its best guess, and the outer set is a disc around it.
//!
//! ```text
//! cargo run --release --example empty_predictions
//! ```

use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Identity, Mode, ScoreTransform};
use ndarray::Array2;

/// Image `i`: the synthetic pair, with an empty prediction for every 12th.
fn image(data: &Synthetic<ndarray::Ix2>, i: usize) -> (Array2<f64>, Array2<bool>) {
    let (mut s, m) = data.pair(i);
    if i.is_multiple_of(12) {
        let top = s.fold(f64::NEG_INFINITY, |a, &x| a.max(x));
        s.mapv_inplace(|x| x - top - 1.0);
    }
    (s, m)
}

fn main() -> confseg::Result<()> {
    let data = Synthetic::new([64, 64]).seed(11);
    let (n, test) = (600, 600..2600);
    let voxels = (64 * 64) as f64;
    println!("{n} calibration, {} test images (64x64), 1 in 12 with an empty prediction", test.len());
    println!("{:<34} alpha  lambda_O  Y⊆O    |O|/voxels: all  empty pred.  others", "outer transform");
    for policy in ["-inf", "-20", "-1000", "argmax"] {
        let outer: ScoreTransform = format!("distance:empty={policy}").parse()?;
        let calibrator = Calibrator::new(Identity, outer.clone());
        let cal = calibrator.calibrate_stream((0..n).map(|i| Ok(image(&data, i))))?;
        for alpha in [0.05, 0.1] {
            let sets = calibrator.fit(&cal, Mode::marginal(Alpha::new(alpha)?))?;
            let (mut covered, mut size) = (0usize, [0usize; 2]);
            let mut count = [0usize; 2];
            for i in test.clone() {
                let (s, m) = image(&data, i);
                let p = sets.predict(&s)?;
                covered += usize::from(p.coverage(&m)?.outer);
                let empty = usize::from(!i.is_multiple_of(12));
                size[empty] += p.outer.iter().filter(|&&b| b).count();
                count[empty] += 1;
            }
            let mean = |k: usize| size[k] as f64 / count[k] as f64 / voxels;
            let all = (size[0] + size[1]) as f64 / test.len() as f64 / voxels;
            println!(
                "{:<34} {alpha:<5}  {:>8.3}  {:.3}  {all:>15.3}  {:>11.3}  {:>6.3}",
                outer.to_string(),
                sets.thresholds().outer.value(),
                covered as f64 / test.len() as f64,
                mean(0),
                mean(1),
            );
        }
    }
    Ok(())
}
