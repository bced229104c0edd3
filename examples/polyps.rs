//! The bounding-box coverage study of the paper (METHOD.md §7–8), on the real
//! polyp data when present, on synthetic data otherwise.
//!
//! Protocol: from the 1798 images, drop the 298 of the learning set
//! (`learning_idx.npy`); split the remaining 1500 at random 1000 times
//! into 1000 calibration and 500 test images; the inner scores are
//! `box_inner_scores.npy`, the outer scores `box_outer_scores.npy` (both
//! already transformed; the outer ones hold `+inf` where nothing was
//! predicted), the truth `masks.npy` (or `box_masks.npy` with `--truth box`).
//! Reported per alpha: marginal inner and outer coverage, joint coverage of
//! the max combination, efficiency, and the baselines on the same splits.
//!
//! ```text
//! cargo run --release --example polyps --features npy,rayon -- [DATA_DIR]
//!     [--truth mask|box] [--repeats N] [--seed S] [--plot DIR]   (--plot needs feature plot)
//! ```
//!
//! `DATA_DIR` defaults to `$CONFSEG_POLYPS`, then to `../shared/data/polyps`
//! relative to the crate root.

use std::path::PathBuf;
use std::time::Instant;

use confseg::evaluate::{table, Geometry, Method, Pool, Report, Splits, Validation};
use confseg::levels::ModeKind;
use confseg::quantile::Rank;
use confseg::synthetic::Synthetic;
use confseg::Levels;
use confseg::{io, Alpha, Calibrator, Identity};
#[cfg(feature = "plot")]
use ndarray::Axis;
use ndarray::{Array3, Ix3};

struct Args {
    dir: PathBuf,
    box_truth: bool,
    repeats: usize,
    seed: u64,
    plot: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let default = std::env::var_os("CONFSEG_POLYPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data/polyps"));
    let mut args = Args { dir: default, box_truth: false, repeats: 1000, seed: 2024, plot: None };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--truth" => {
                args.box_truth = match value("--truth")?.as_str() {
                    "mask" => false,
                    "box" => true,
                    t => return Err(format!("--truth must be mask or box, not {t:?}")),
                }
            }
            "--repeats" => {
                args.repeats = value("--repeats")?.parse().map_err(|e| format!("--repeats: {e}"))?
            }
            "--seed" => args.seed = value("--seed")?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--plot" => args.plot = Some(PathBuf::from(value("--plot")?)),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s => args.dir = PathBuf::from(s),
        }
    }
    Ok(args)
}

/// Transformed inner and outer scores, truths and the indices to validate on
/// (the arrays are drawn only with the `plot` feature).
#[cfg_attr(not(feature = "plot"), allow(dead_code))]
struct Data {
    inner: Array3<f64>,
    outer: Array3<f64>,
    masks: Array3<bool>,
    keep: Vec<usize>,
    pool: Pool,
}

/// The 1500 non-learning polyp images, or `None` without data.
fn polyp_data(args: &Args) -> confseg::Result<Option<Data>> {
    let d = &args.dir;
    if !d.join("box_inner_scores.npy").exists() {
        return Ok(None);
    }
    let as3 = |a: ndarray::ArrayD<f64>| {
        a.into_dimensionality::<Ix3>().map_err(|e| confseg::Error::InvalidParameter {
            name: "scores",
            value: e.to_string(),
            reason: "expected a (N, 50, 50) stack".into(),
        })
    };
    let inner = as3(io::read_scores(d.join("box_inner_scores.npy"))?)?;
    let outer = as3(io::read_scores(d.join("box_outer_scores.npy"))?)?;
    let truth_file = if args.box_truth { "box_masks.npy" } else { "masks.npy" };
    let masks = io::read_masks(d.join(truth_file))?.into_dimensionality::<Ix3>().map_err(|e| {
        confseg::Error::InvalidParameter {
            name: "masks",
            value: e.to_string(),
            reason: "expected 3 axes".into(),
        }
    })?;
    let n = masks.shape()[0];
    let learning = io::read_indices(d.join("learning_idx.npy"), n)?;
    let keep: Vec<usize> = (0..n).filter(|i| !learning.contains(i)).collect();
    println!(
        "polyps: {n} images, {} in the learning set, {} for calibration/test; truth = {truth_file}",
        learning.len(),
        keep.len()
    );
    // The predicted box mask of the morphological baseline: {b_O > 0}.
    let pool = Pool::from_transformed(&Calibrator::new(Identity, Identity), &inner, &outer, &masks, 0.0)?
        .subset(&keep)?;
    Ok(Some(Data { inner, outer, masks, keep, pool }))
}

fn synthetic_data() -> confseg::Result<Data> {
    println!("polyp data not found: synthetic 50x50 logits instead (1500 images, identity transforms)");
    let (scores, masks) = Synthetic::new([50, 50]).seed(7).stack(0..1500);
    let pool = Pool::new(&Calibrator::new(Identity, Identity), &scores, &masks, 0.0)?;
    Ok(Data { inner: scores.clone(), outer: scores, masks, keep: (0..1500).collect(), pool })
}

fn coverage_table(reports: &[Report]) -> String {
    use std::fmt::Write as _;
    let mut s = String::from("| alpha | nominal | inner (marginal) | outer (marginal) | joint (max) | joint sd | splits below nominal |\n|---|---|---|---|---|---|---|\n");
    let marginal: Vec<&Report> = reports.iter().filter(|r| r.method == "conformal marginal").collect();
    let max: Vec<&Report> = reports.iter().filter(|r| r.method == "conformal max").collect();
    for (m, j) in marginal.iter().zip(&max) {
        let _ = writeln!(
            s,
            "| {} | {:.2} | {:.4} | {:.4} | {:.4} | {:.4} | {:.3} |",
            m.alpha,
            1.0 - m.alpha,
            m.inner_coverage,
            m.outer_coverage,
            j.joint_coverage,
            j.joint.sd,
            j.joint.below_nominal.unwrap_or(f64::NAN)
        );
    }
    s
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let t0 = Instant::now();
    let data = match polyp_data(&args)? {
        Some(d) => d,
        None => synthetic_data()?,
    };
    let pool = &data.pool;
    println!("pool of {} images prepared in {:.2?}", pool.len(), t0.elapsed());

    let alphas: Vec<Alpha> =
        [0.05, 0.1, 0.15, 0.2, 0.25, 0.3].iter().map(|&a| Alpha::new(a)).collect::<Result<_, _>>()?;
    let splits = Splits::new(1000, args.repeats, args.seed)?.with_n_test(500)?;
    let methods = [
        Method::Conformal(Levels::new(ModeKind::Marginal)),
        Method::Conformal(Levels::new(ModeKind::Max)),
        Method::Conformal(Levels::bonferroni(1.0, 4.0)),
        Method::RiskControl,
        Method::PixelwiseBonferroni(Levels::bonferroni(1.0, 4.0)),
        Method::Morphological(confseg::transform::Footprint::Full, Rank::Marginal),
    ];
    let t1 = Instant::now();
    let reports = Validation::new(alphas, splits)
        .with_geometry(Geometry::FirstSplits(20))
        .run_with_progress(pool, &methods, |p| {
            if p.done == p.total {
                eprintln!("  {} done ({})", p.stage, p.total);
            }
        })?;
    println!(
        "{} splits (1000 calibration / 500 test) x {} methods x 6 levels in {:.2?}\n",
        args.repeats,
        methods.len(),
        t1.elapsed()
    );
    println!("{}", coverage_table(&reports));
    print!("{}", table(&reports));

    #[cfg(feature = "plot")]
    if let Some(dir) = &args.plot {
        use confseg::plot::{coverage_plot, coverage_series, CoverageKind};
        std::fs::create_dir_all(dir)?;
        for kind in [CoverageKind::Inner, CoverageKind::Outer, CoverageKind::Joint] {
            let path = dir.join(format!("coverage_{}.png", kind.name()));
            coverage_plot(&path, &coverage_series(&reports, kind), &format!("{} coverage", kind.name()))?;
            println!("wrote {}", path.display());
        }
        // Figure 1: sets of the max mode at alpha = 0.1, calibrated on the
        // first split, for its first three test images, over the inner scores
        let (cal, test) = splits.generate(pool.len())?.swap_remove(0);
        let sets = Calibrator::new(Identity, Identity)
            .fit(&pool.statistics().select(&cal)?, confseg::Mode::max(Alpha::new(0.1)?))?;
        for &t in &test[..3] {
            let i = data.keep[t];
            let (fi, fo) = (data.inner.index_axis(Axis(0), i), data.outer.index_axis(Axis(0), i));
            let pred = sets.predict_transformed(&fi, &fo)?;
            let path = dir.join(format!("overlay_{i}.png"));
            let title = format!("image {i}: 90% joint (max), lambda = {}", sets.thresholds().inner.value());
            confseg::plot::overlay(&path, &fi, &data.masks.index_axis(Axis(0), i), &pred, &title)?;
            println!("wrote {}", path.display());
        }
    }
    #[cfg(not(feature = "plot"))]
    if args.plot.is_some() {
        return Err("--plot needs the `plot` feature".into());
    }
    Ok(())
}
