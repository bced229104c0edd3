//! Several structures with one joint guarantee, on synthetic BraTS-like
//! data: nested structures WT ⊇ TC ⊇ ET given as label sets of a 4-class
//! label map (0 background, 2 edema, 1 necrotic core, 4 enhancing), scores
//! as 4-class logits reduced by a softmax. Prints the joint coverage
//! `P(for every k: I_k ⊆ Y_k ⊆ O_k)` at alpha = 0.05 / 0.1 / 0.2 (max and
//! Bonferroni modes) and the mean set sizes per structure.
//!
//! ```text
//! cargo run --release --example structures
//! ```

use confseg::calibrate::StructureCalibrator;
use confseg::levels::JointMode;
use confseg::mask::Structure;
use confseg::stream::Lazy;
use confseg::synthetic::Synthetic;
use confseg::transform::StructureScores;
use confseg::{Alpha, Calibrator, ScoreTransform};
use ndarray::{Array2, Array3};

const SIZE: usize = 48;

/// Image `i`: logits of the classes [0, 1, 2, 4] (class axis 0) and the label map.
fn image(g: &[Synthetic<ndarray::Ix2>; 3], i: usize) -> (Array3<f64>, Array2<u8>) {
    let [(sa, ma), (sb, mb), (sc, mc)] = g.each_ref().map(|s| s.pair(i));
    let labels =
        Array2::from_shape_fn((SIZE, SIZE), |v| match (ma[v], ma[v] && mb[v], ma[v] && mb[v] && mc[v]) {
            (_, _, true) => 4,
            (_, true, _) => 1,
            (true, _, _) => 2,
            _ => 0,
        });
    // background 0; edema sa; core sa + sb; enhancing sa + sb + sc
    let logits = Array3::from_shape_fn((4, SIZE, SIZE), |(c, y, x)| match c {
        0 => 0.0,
        1 => sa[[y, x]] + sb[[y, x]],
        2 => sa[[y, x]],
        _ => sa[[y, x]] + sb[[y, x]] + sc[[y, x]],
    });
    (logits, labels)
}

fn main() -> confseg::Result<()> {
    let g = [11u64, 12, 13].map(|s| Synthetic::new([SIZE, SIZE]).seed(s));
    let structures: Vec<Structure> =
        ["WT=1,2,4", "TC=1,4", "ET=4"].iter().map(|s| s.parse()).collect::<confseg::Result<_>>()?;
    let distance: ScoreTransform = "distance:threshold=0.5".parse()?;
    let sc = StructureCalibrator::new(
        Calibrator::new(distance.clone(), distance),
        structures.clone(),
        StructureScores::Softmax { axis: 0, class_labels: vec![0, 1, 2, 4] },
    )?;
    let (n, test) = (500, 500..2500);
    let g = &g;
    let cal = sc.calibrate_stream((0..n).map(|i| {
        Ok(Lazy(move || {
            let (logits, labels) = image(g, i);
            Ok((logits, None, labels))
        }))
    }))?;
    let truth_size: Vec<f64> = {
        let mut t = vec![0usize; structures.len()];
        for i in test.clone() {
            let (_, labels) = image(g, i);
            for (k, s) in structures.iter().enumerate() {
                t[k] += s.labels().binarize(&labels)?.iter().filter(|&&b| b != 0).count();
            }
        }
        t.iter().map(|&c| c as f64 / test.len() as f64).collect()
    };
    println!(
        "{n} calibration, {} test images ({SIZE}x{SIZE}); inner and outer: signed distance to the p > 0.5 mask",
        test.len()
    );
    let names: Vec<&str> = structures.iter().map(Structure::name).collect();
    println!(
        "mean |Y|: {}",
        names.iter().zip(&truth_size).map(|(n, t)| format!("{n} {t:.0}")).collect::<Vec<_>>().join(", ")
    );
    println!("mode        alpha  joint I⊆Y⊆O   per structure: |I| / |O| (mean voxels), own coverage");
    for alpha in [0.05, 0.1, 0.2] {
        let a = Alpha::new(alpha)?;
        let split = vec![(1.0, 1.0); structures.len()];
        for (name, mode) in
            [("max", JointMode::max(a, structures.len())), ("bonferroni", JointMode::bonferroni(a, &split)?)]
        {
            let sets = sc.fit(&cal, mode)?;
            let mut joint = 0usize;
            let mut per = vec![(0usize, 0usize, 0usize); structures.len()];
            for i in test.clone() {
                let (logits, labels) = image(g, i);
                let p = sets.predict(&logits, None)?;
                let mut all = true;
                for (k, s) in structures.iter().enumerate() {
                    let c = p[k].coverage(&s.labels().binarize(&labels)?)?;
                    all &= c.joint();
                    per[k].0 += p[k].inner.iter().filter(|&&b| b).count();
                    per[k].1 += p[k].outer.iter().filter(|&&b| b).count();
                    per[k].2 += usize::from(c.joint());
                }
                joint += usize::from(all);
            }
            let m = test.len() as f64;
            let detail: Vec<String> = names
                .iter()
                .zip(&per)
                .map(|(n, (i, o, c))| {
                    format!("{n} {:.0}/{:.0} {:.3}", *i as f64 / m, *o as f64 / m, *c as f64 / m)
                })
                .collect();
            println!(
                "{name:<11} {alpha:<5}  {:.3} (≥ {:.2})  {}",
                joint as f64 / m,
                1.0 - alpha,
                detail.join("  ")
            );
        }
    }
    Ok(())
}
