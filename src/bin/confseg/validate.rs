//! `confseg validate`: coverage and efficiency over repeated random splits
//! of a labelled stack, for our sets and the baselines (METHOD.md §7).

use std::path::PathBuf;

use anyhow::{Context, Result};
use confseg::evaluate::diagnostics::{diagnose, diagnostics_table, Diagnostics, StrataSpec};
use confseg::evaluate::{table, Geometry, Method, MethodKind, Pool, Splits, Validation};
use confseg::plot::{coverage_plot, coverage_series, CoverageKind};
use confseg::Alpha;

use crate::cli::inputs::CalibrationInputs;
use crate::cli::levels::{parse_name, ModeArgs};
use crate::cli::report::{self, outln, usage};

/// The `--plot-kind` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// P(I ⊆ Y).
    Inner,
    /// P(Y ⊆ O).
    Outer,
    /// P(I ⊆ Y ⊆ O).
    Joint,
}

/// Levels given to `--alpha`.
#[derive(Debug, Clone, PartialEq)]
pub struct Alphas(pub Vec<Alpha>);

/// Parse `0.05,0.1,0.2` or a grid `START:STOP:STEP` (inclusive).
fn parse_alphas(s: &str) -> Result<Alphas, String> {
    let alpha = |x: f64| Alpha::new(x).map_err(|_| format!("{x:?} is outside (0, 1)"));
    let num = |x: &str| x.trim().parse::<f64>().map_err(|_| format!("{x:?} is not a number in {s:?}"));
    let parts: Vec<&str> = s.split(':').collect();
    match parts.as_slice() {
        [start, stop, step] => {
            let (start, stop, step) = (num(start)?, num(stop)?, num(step)?);
            if !(step > 0.0 && start <= stop) {
                return Err(format!("grid {s:?} needs START <= STOP and STEP > 0"));
            }
            let steps = ((stop - start) / step + 1e-9).floor();
            // (a NaN step count fails this test too)
            if steps.partial_cmp(&(confseg::evaluate::MAX_LEVELS as f64)) != Some(std::cmp::Ordering::Less) {
                return Err(format!(
                    "grid {s:?} has {} levels; at most {}",
                    steps + 1.0,
                    confseg::evaluate::MAX_LEVELS
                ));
            }
            let n = steps as usize;
            (0..=n)
                .map(|k| alpha(((start + k as f64 * step) * 1e12).round() / 1e12))
                .collect::<Result<Vec<_>, _>>()
                .map(Alphas)
        }
        [_] if s.split(',').count() > confseg::evaluate::MAX_LEVELS => {
            Err(format!("at most {} levels", confseg::evaluate::MAX_LEVELS))
        }
        [_] => s.split(',').map(|x| num(x).and_then(alpha)).collect::<Result<Vec<_>, _>>().map(Alphas),
        _ => Err(format!("expected a list 0.05,0.1 or a grid START:STOP:STEP, got {s:?}")),
    }
}

/// Coverage and efficiency over repeated random calibration/test splits.
///
/// Every image's calibration statistics are computed once; each split is
/// then a conformal quantile and a count. Baselines run on the same splits.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    confseg validate --masks M.npy --inner-scores A.npy --outer-scores B.npy --exclude learning_idx.npy \\\n    \
    --n-cal 1000 --n-test 500 --repeats 1000 --alpha 0.05:0.3:0.05 --mode max --plot coverage.png\n  \
    confseg validate --masks M.npy --scores S.npy --outer distance --alpha 0.1 --mode bonferroni \\\n    \
    --weights 1:4 --method conformal,risk-control,pixelwise --json")]
pub struct Args {
    #[command(flatten)]
    pub inputs: CalibrationInputs,
    /// Levels: a list 0.05,0.1,0.2 or a grid START:STOP:STEP.
    #[arg(allow_hyphen_values = true, long, value_parser = parse_alphas, value_name = "LIST|GRID")]
    pub alpha: Alphas,
    /// Guarantee of the conformal sets (as in `calibrate`); --weights also split the pixel-wise
    /// baseline's alpha, --delta also applies to the morphological baselines.
    #[command(flatten)]
    pub mode: ModeArgs,
    /// Methods to compare, on the same splits: conformal, risk-control, pixelwise,
    /// morphological-chessboard, morphological-cityblock.
    #[arg(long, value_delimiter = ',', default_value = "conformal", value_parser = parse_name::<MethodKind>)]
    pub method: Vec<MethodKind>,
    /// Calibration images per split.
    #[arg(allow_hyphen_values = true, long)]
    pub n_cal: usize,
    /// Test images per split (default: all the others).
    #[arg(allow_hyphen_values = true, long)]
    pub n_test: Option<usize>,
    /// Number of random splits.
    #[arg(allow_hyphen_values = true, long, default_value_t = 1000)]
    pub repeats: usize,
    /// Seed of the splits.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0)]
    pub seed: u64,
    /// Record the first N splits' calibration images (file positions) and thresholds in the --json
    /// output ("recorded"), to refit a split with `calibrate --indices` and compare.
    #[arg(allow_hyphen_values = true, long, default_value_t = 0, value_name = "N")]
    pub record_splits: usize,
    /// Diameter and Hausdorff measures on the first N splits (0: off).
    #[arg(allow_hyphen_values = true, long, default_value_t = 20, value_name = "N")]
    pub geometry_splits: usize,
    /// Print the results as JSON (a list, one entry per method and level) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Draw coverage against the nominal level (PNG or SVG by extension).
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Which coverage --plot shows.
    #[arg(long, value_enum, default_value = "joint")]
    pub plot_kind: KindArg,
    /// Also report the sets' coverage, set sizes and mean missed / false shares (conformal or
    /// risk-control --mode) by stratum: per group (--groups or the
    /// manifest's group column), per quintile of the true object size, per predicted-volume stratum
    /// (--strata, else quintiles), and the lesion-level shares (inner-set components on the first
    /// --geometry-splits splits). With --json: {"reports": [...], "by_stratum": [...]}.
    #[arg(long)]
    pub by_stratum: bool,
    /// With --by-stratum: a 1-D integer .npy of one group label per image of the score files.
    #[arg(long, value_name = "G.npy", requires = "by_stratum")]
    pub groups: Option<PathBuf>,
    /// With --by-stratum: predicted-volume strata by fixed edges in voxels, predicted-volume=E1,E2,...
    #[arg(long, value_name = "SPEC", requires = "by_stratum")]
    pub strata: Option<confseg::groups::Strata>,
    /// Write one self-contained HTML report here: coverage against 1 - alpha and set sizes per method
    /// (fixed colours; levels with infinite thresholds marked), the histograms of the images'
    /// calibration statistics, and the table.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
}

/// The pool of the selected images (statistics computed once per image),
/// streamed from the files in their native precision.
fn pool(args: &Args) -> Result<(Pool, Vec<usize>, Option<Vec<confseg::groups::Group>>)> {
    let (inputs, bar) = args.inputs.open("transforming")?;
    if inputs.images.is_empty() {
        usage!("no images selected");
    }
    let groups = if args.by_stratum {
        confseg::pipeline::image_groups(inputs.scores(), args.groups.as_deref(), &inputs.images)?
    } else {
        None
    };
    let pool = inputs.pool()?;
    bar.finish_and_clear();
    report::warn(&inputs.warnings());
    Ok((pool, inputs.images, groups))
}

/// The diagnostics by stratum of the sets at every level.
fn by_stratum(
    args: &Args,
    pool: &Pool,
    splits: Splits,
    groups: Option<Vec<confseg::groups::Group>>,
) -> Result<Vec<Diagnostics>> {
    let spec = StrataSpec::new(groups, args.strata.as_ref(), args.geometry_splits).context("--strata")?;
    let levels = args.mode.levels();
    Ok(args
        .alpha
        .0
        .iter()
        .map(|&a| diagnose(pool, &levels, a, splits, &spec))
        .collect::<confseg::Result<_>>()?)
}

/// Run `validate`.
pub fn run(args: Args) -> Result<()> {
    let levels = args.mode.levels();
    let methods =
        args.method.iter().map(|&m| Method::new(m, &levels)).collect::<confseg::Result<Vec<_>>>()?;
    let mut splits = Splits::new(args.n_cal, args.repeats, args.seed).context("--n-cal/--repeats")?;
    if let Some(t) = args.n_test {
        splits = splits.with_n_test(t).context("--n-test")?;
    }
    let (pool, images, groups) = pool(&args)?;
    splits.n_test_for(pool.len()).with_context(|| format!("{} images selected", pool.len()))?;
    let geometry = match args.geometry_splits {
        0 => Geometry::Off,
        k => Geometry::FirstSplits(k),
    };
    let validation = Validation::new(args.alpha.0.clone(), splits)
        .with_geometry(geometry)
        .with_recorded_splits(args.record_splits)
        .context("--record-splits")?;
    let voxels: usize = pool.max_voxels();
    let work_per_split = voxels * methods.len() * args.alpha.0.len() * 64;
    let mut bar = report::progress_in("splits", "splits", args.repeats, work_per_split);
    let mut stage = "splits";
    let reports = validation.run_with_progress(&pool, &methods, |p| {
        if p.stage != stage {
            bar.finish_and_clear();
            bar = report::progress_in(p.stage, p.unit, p.total, work_per_split);
            stage = p.stage;
        }
        bar.set_position(p.done as u64);
    })?;
    bar.finish_and_clear();
    // recorded calibration images as positions in the input files
    let mut reports = reports;
    for r in &mut reports {
        for rec in &mut r.recorded {
            for i in &mut rec.calibration {
                *i = images[*i];
            }
        }
    }

    let diagnostics = if args.by_stratum { Some(by_stratum(&args, &pool, splits, groups)?) } else { None };
    if args.json {
        let text = match &diagnostics {
            Some(d) => {
                serde_json::to_string_pretty(&serde_json::json!({ "reports": &reports, "by_stratum": d }))
            }
            None => serde_json::to_string_pretty(&reports),
        };
        outln!("{}", text.context("cannot serialize the results")?);
    } else {
        outln!(
            "{} images; {} splits into {} calibration / {} test images (seed {})",
            pool.len(),
            args.repeats,
            args.n_cal,
            splits.n_test_for(pool.len())?,
            args.seed
        );
        report::out(&table(&reports))?;
        outln!("(coverage: mean over splits; sd and <nom: spread of the joint coverage and share of splits below nominal)");
        for d in diagnostics.iter().flatten() {
            report::out(&diagnostics_table(d))?;
        }
    }
    for r in &reports {
        if r.too_few_images > 0.0 {
            eprintln!(
                "warning: {} at alpha {}: n_cal = {} is too small for a finite threshold; sets trivial",
                r.method, r.alpha, r.n_cal
            );
        }
    }
    if let Some(path) = &args.report {
        let page = confseg::html::validation_page(
            &reports,
            pool.statistics(),
            &summary_line(&args, &pool, &splits)?,
        );
        page.write(path)?;
        if args.json {
            eprintln!("wrote {}", path.display());
        } else {
            outln!("wrote {}", path.display());
        }
    }
    if let Some(path) = &args.plot {
        let kind = match args.plot_kind {
            KindArg::Inner => CoverageKind::Inner,
            KindArg::Outer => CoverageKind::Outer,
            KindArg::Joint => CoverageKind::Joint,
        };
        let title = format!("{} coverage over {} splits (n_cal = {})", kind.name(), args.repeats, args.n_cal);
        coverage_plot(path, &coverage_series(&reports, kind), &title)?;
        if args.json {
            eprintln!("wrote {}", path.display());
        } else {
            outln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// What the validation did, in one line.
fn summary_line(args: &Args, pool: &Pool, splits: &Splits) -> Result<String> {
    Ok(format!(
        "{} images; {} random splits into {} calibration and {} test images (seed {}); levels: {}.",
        pool.len(),
        args.repeats,
        args.n_cal,
        splits.n_test_for(pool.len())?,
        args.seed,
        args.mode.levels()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpha_lists_and_grids() {
        let v = |s: &str| parse_alphas(s).unwrap().0.iter().map(|a| a.get()).collect::<Vec<_>>();
        assert_eq!(v("0.05,0.1, 0.2"), vec![0.05, 0.1, 0.2]);
        let g = v("0.05:0.3:0.05");
        assert_eq!(g.len(), 6);
        assert!((g[5] - 0.3).abs() < 1e-12);
        assert!(parse_alphas("0.1:0.05:0.01").is_err());
        assert!(parse_alphas("0:0.2:0.1").is_err());
        assert!(parse_alphas("1.2").is_err());
        assert!(parse_alphas("a,b").is_err());
    }
}
