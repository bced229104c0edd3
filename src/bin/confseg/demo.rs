//! `confseg demo`: the whole pipeline on built-in synthetic data.

use anyhow::Result;

use crate::cli::report::outln;
use confseg::synthetic::Synthetic;
use confseg::{Alpha, Calibrator, Mode, ScoreTransform};
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
            label: "bonf. 1:4 +dist".into(),
        });
    }

    outln!(
        "confseg demo: {} calibration, {} test images ({}x{} synthetic logits, seed {})",
        args.n_cal,
        args.n_test,
        args.size,
        args.size,
        args.seed
    );
    outln!("alpha = {}: each guaranteed event holds with probability >= {}", alpha, 1.0 - alpha.get());
    outln!();
    outln!(
        "{:<15} {:>8} {:>8}  {:<7} {:>4} {:>8} {:>6} {:>7} {:>7}",
        "method",
        "lambda_I",
        "lambda_O",
        "event",
        "goal",
        "held-out",
        "mean",
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
        let mut held = [0usize; 3];
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
            for (k, met) in held.iter_mut().zip([a, b, a && b]) {
                *k += usize::from(met);
            }
        }
        let frac = |c: usize| c as f64 / args.n_test as f64;
        let size = |a: &ndarray::Array3<bool>| a.iter().filter(|&&b| b).count() as f64 / truth_size;
        // the guaranteed events: each side (marginal), or both at once
        let events: &[(usize, &str)] =
            if s.mode.kind().is_joint() { &[(2, "I⊆Y⊆O")] } else { &[(0, "I⊆Y"), (1, "Y⊆O")] };
        for (row, &(k, event)) in events.iter().enumerate() {
            let (label, li, lo, si, so) = if row == 0 {
                (
                    s.label.as_str(),
                    short(sets.thresholds().inner.value()),
                    short(sets.thresholds().outer.value()),
                    format!("{:.2}", size(&pred.inner)),
                    format!("{:.2}", size(&pred.outer)),
                )
            } else {
                ("", String::new(), String::new(), String::new(), String::new())
            };
            let line = format!(
                "{:<15} {:>8} {:>8}  {:<7} {:>4.2} {:>8.3} {:>6.3} {:>7} {:>7}",
                label,
                li,
                lo,
                event,
                1.0 - alpha.get(),
                frac(held[k]),
                mean[k],
                si,
                so
            );
            outln!("{}", line.trim_end());
        }
        crate::cli::report::warn(&cal.warnings(&sets));
    }
    let a = alpha.get();
    let n = args.n_cal as f64;
    let explain = [
        "lambda_I/_O thresholds: inner set {f_I > lambda_I}, outer set {-f_O <= lambda_O}".to_owned(),
        "event, goal what is guaranteed, with probability at least goal = 1 - alpha".to_owned(),
        format!("held-out    share of the {} test images whose sets meet the event, for one", args.n_test),
        format!(
            "            calibration set (sd about {:.3} from it, {:.3} from the test set)",
            (a * (1.0 - a) / n).sqrt(),
            (a * (1.0 - a) / args.n_test as f64).sqrt()
        ),
        format!(
            "mean        the same over {} random calibration/test splits: at least {:.3}",
            args.splits,
            1.0 - a
        ),
        format!(
            "            on average (at most {:.3} = 1 - alpha + 1/(n+1) for one event)",
            1.0 - a + 1.0 / (n + 1.0)
        ),
        "|I|/|Y| ... set sizes relative to the true objects of the test images".to_owned(),
        "methods     f_I is the logit; marginal: each side at alpha; bonferroni 1:4:".to_owned(),
        format!(
            "            alpha split {:.3}/{:.3}; max: one threshold for both sides;",
            a / 5.0,
            4.0 * a / 5.0
        ),
        "            +dist: f_O the signed distance to the predicted mask (the paper's)".to_owned(),
    ];
    outln!();
    for line in explain {
        outln!("{line}");
    }
    outln!();
    outln!("On your data (scores and 0/1 masks as .npy stacks or NIfTI folders):");
    outln!("  confseg calibrate --scores S.npy --masks M.npy --alpha 0.1 --mode max \\");
    outln!("      -o cal.json");
    outln!("  confseg predict --calibration cal.json --scores NEW.npy \\");
    outln!("      --inner-out I.npy --outer-out O.npy");
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
