//! `confseg demo`: the whole pipeline on built-in synthetic data.

use anyhow::Result;

use crate::cli::report::outln;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Mode, ScoreTransform, Transform};
use ndarray::{Axis, Zip};
use rand::seq::SliceRandom;
use rand::SeedableRng;

/// Largest image side of the demo.
const MAX_SIZE: usize = 1024;
/// Most voxels the demo generates (calibration and test images together,
/// 8 bytes each, held in memory).
const MAX_VOXELS: usize = 1 << 27;
/// Most random splits of the demo.
const MAX_SPLITS: usize = 100_000;

/// Calibrate on synthetic logits and masks, predict on held-out images and
/// compare the empirical coverage with the nominal level.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Number of calibration images.
    #[arg(allow_hyphen_values = true, long, default_value_t = 500)]
    pub n_cal: usize,
    /// Number of held-out test images.
    #[arg(allow_hyphen_values = true, long, default_value_t = 1000)]
    pub n_test: usize,
    /// Image side length (square images).
    #[arg(allow_hyphen_values = true, long, default_value_t = 64)]
    pub size: usize,
    /// Seed of the synthetic data.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0)]
    pub seed: u64,
    /// Miscoverage level.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0.1)]
    pub alpha: f64,
    /// Random calibration/test splits of the pooled images for the mean coverage.
    #[arg(allow_hyphen_values = true, long, default_value_t = 500)]
    pub splits: usize,
}

/// One row of the report: transforms and mode.
struct Setup {
    inner: ScoreTransform,
    outer: ScoreTransform,
    mode: Mode,
    label: String,
}

/// A threshold in a table cell: 3 decimals, or `inf`/`-inf`.
fn short(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.3}")
    } else {
        crate::cli::report::number(x)
    }
}

/// Run `demo`.
pub fn run(args: Args) -> Result<()> {
    let alpha = Alpha::new(args.alpha)
        .map_err(|e| anyhow::Error::new(crate::cli::report::UsageError(format!("--alpha: {e}"))))?;
    if args.n_cal == 0 || args.n_test == 0 || args.splits == 0 {
        crate::cli::report::usage!("--n-cal, --n-test and --splits must be at least 1");
    }
    if !(4..=MAX_SIZE).contains(&args.size) {
        crate::cli::report::usage!("--size {} is outside 4..={MAX_SIZE}", args.size);
    }
    let voxels = (args.n_cal as u128 + args.n_test as u128) * (args.size as u128).pow(2);
    if voxels > MAX_VOXELS as u128 || args.splits > MAX_SPLITS {
        crate::cli::report::usage!(
            "the demo is limited to {MAX_VOXELS} voxels in all ((n_cal + n_test) x size^2; {voxels} asked) \
             and {MAX_SPLITS} splits"
        );
    }
    let data = Synthetic::new([args.size, args.size]).seed(args.seed);
    let (cal_s, cal_m) = data.stack(0..args.n_cal);
    let (test_s, test_m) = data.stack(args.n_cal..args.n_cal + args.n_test);

    let id = ScoreTransform::Identity;
    let mut setups = vec![
        Setup { inner: id.clone(), outer: id.clone(), mode: Mode::marginal(alpha), label: "marginal".into() },
        Setup {
            inner: id.clone(),
            outer: id.clone(),
            mode: Mode::bonferroni(alpha, 1.0, 4.0)?,
            label: "bonferroni 1:4".into(),
        },
        Setup { inner: id.clone(), outer: id.clone(), mode: Mode::max(alpha), label: "max".into() },
    ];
    // The paper's pipeline, once the signed distance transform is available.
    if let Ok(distance) = "distance".parse::<ScoreTransform>() {
        setups.push(Setup {
            inner: id.clone(),
            outer: distance,
            mode: Mode::bonferroni(alpha, 1.0, 4.0)?,
            label: "bonferroni 1:4".into(),
        });
    }

    outln!(
        "confseg demo: {} calibration and {} test images of {}x{} synthetic logits (seed {}), alpha = {}",
        args.n_cal,
        args.n_test,
        args.size,
        args.size,
        args.seed,
        alpha
    );
    outln!("guarantee: marginal P(I ⊆ Y), P(Y ⊆ O) >= {0}; joint P(I ⊆ Y ⊆ O) >= {0}", 1.0 - alpha.get());
    outln!();
    outln!(
        "{:<30} {:<15} {:>9} {:>9}  {:^20}  {:^20}  {:<10} {:>7} {:>7}",
        "",
        "",
        "",
        "",
        "held-out coverage",
        format!("mean of {} splits", args.splits),
        "",
        "",
        ""
    );
    outln!(
        "{:<30} {:<15} {:>9} {:>9}  {:>6} {:>6} {:>6}  {:>6} {:>6} {:>6}  {:<10} {:>7} {:>7}",
        "f_I / f_O",
        "mode",
        "lambda_I",
        "lambda_O",
        "I⊆Y",
        "Y⊆O",
        "I⊆Y⊆O",
        "I⊆Y",
        "Y⊆O",
        "I⊆Y⊆O",
        "nominal",
        "|I|/|Y|",
        "|O|/|Y|"
    );
    let truth_size = test_m.iter().filter(|&&b| b).count().max(1) as f64;
    for s in &setups {
        let calibrator = Calibrator::new(s.inner.clone(), s.outer.clone());
        let cal = calibrator.calibrate_stack(&cal_s, &cal_m)?;
        let sets = calibrator.fit(&cal, s.mode)?;
        let mut pool = cal.clone();
        pool.merge(&calibrator.calibrate_stack(&test_s, &test_m)?)?;
        let mean = split_coverage(&pool, args.n_cal, s.mode, args.splits, args.seed)?;
        let pred = sets.predict_stack(&test_s)?;
        let (mut ci, mut co, mut cj) = (0usize, 0usize, 0usize);
        for i in 0..args.n_test {
            let (inner, outer, y) = (
                pred.inner.index_axis(Axis(0), i),
                pred.outer.index_axis(Axis(0), i),
                test_m.index_axis(Axis(0), i),
            );
            let (a, b) = Zip::from(&inner)
                .and(&outer)
                .and(&y)
                .fold((true, true), |(a, b), &i, &o, &y| (a && (!i || y), b && (!y || o)));
            ci += usize::from(a);
            co += usize::from(b);
            cj += usize::from(a && b);
        }
        let frac = |c: usize| c as f64 / args.n_test as f64;
        let size = |a: &ndarray::Array3<bool>| a.iter().filter(|&&b| b).count() as f64 / truth_size;
        let nominal =
            format!("{:.2} {}", 1.0 - alpha.get(), if s.mode.kind().is_joint() { "joint" } else { "each" });
        outln!(
            "{:<30} {:<15} {:>9} {:>9}  {:>6.3} {:>6.3} {:>6.3}  {:>6.3} {:>6.3} {:>6.3}  {:<10} {:>7.2} {:>7.2}",
            format!("{} / {}", s.inner.describe(), s.outer.describe()),
            s.label,
            short(sets.thresholds().inner.value()),
            short(sets.thresholds().outer.value()),
            frac(ci),
            frac(co),
            frac(cj),
            mean[0],
            mean[1],
            mean[2],
            nominal,
            size(&pred.inner),
            size(&pred.outer),
        );
        crate::cli::report::warn(&cal.warnings(&sets));
    }
    let a = alpha.get();
    outln!();
    outln!(
        "Held-out coverage: share of the {} test images whose predicted sets cover the truth, for one \
         calibration set;\nit varies around the guarantee by about {:.3} (sd) from the calibration draw \
         plus {:.3} from the test set.\nThe guarantee holds on average over calibration draws: the mean \
         over {} random splits of the pooled images\nlies between 1 - alpha and 1 - alpha + 1/(n+1) = {:.3} \
         for the marginal coverage of continuous scores.",
        args.n_test,
        (a * (1.0 - a) / args.n_cal as f64).sqrt(),
        (a * (1.0 - a) / args.n_test as f64).sqrt(),
        args.splits,
        1.0 - a + 1.0 / (args.n_cal as f64 + 1.0),
    );
    Ok(())
}

/// Mean inner, outer and joint coverage over random splits of the pooled
/// statistics into `n_cal` calibration and the rest test images. A test
/// image is covered by the inner set iff `tau <= lambda_I` and by the outer
/// set iff `gamma <= lambda_O`, so no prediction is needed (METHOD.md §7).
fn split_coverage(
    pool: &confseg::Calibration,
    n_cal: usize,
    mode: Mode,
    splits: usize,
    seed: u64,
) -> Result<[f64; 3]> {
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed ^ 0x5EED);
    let mut idx: Vec<usize> = (0..pool.len()).collect();
    let mut sums = [0.0; 3];
    for _ in 0..splits {
        idx.shuffle(&mut rng);
        let t = pool.select(&idx[..n_cal])?.thresholds(&mode)?;
        let (li, lo) = (t.inner.value(), t.outer.value());
        let test = &idx[n_cal..];
        let mut c = [0usize; 3];
        for s in test.iter().filter_map(|&i| pool.get(i)) {
            let (a, b) = (s.tau <= li, s.gamma <= lo);
            c[0] += usize::from(a);
            c[1] += usize::from(b);
            c[2] += usize::from(a && b);
        }
        for k in 0..3 {
            sums[k] += c[k] as f64 / test.len() as f64;
        }
    }
    Ok(sums.map(|x| x / splits.max(1) as f64))
}
