//! `confseg calibrate`: thresholds from labelled images, written as JSON.

use std::path::PathBuf;

use anyhow::Result;
use confseg::levels::Guarantee;

use confseg::pipeline::Fitted;

use crate::cli::inputs::CalibrationInputs;
use crate::cli::levels::LevelArgs;
use crate::cli::report::{self, usage};
use confseg::groups::SmallGroups;
use confseg::pipeline::Grouping;

/// Calibrate on masks and scores (raw with --inner/--outer transforms, or
/// already transformed) at the given levels. Images stream through the
/// calibration in the files' precision (float32 stays float32), a few at a
/// time, in parallel.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Examples:\n  \
    confseg calibrate --masks M.npy --scores S.npy --inner identity --outer distance \\\n    \
    --alpha 0.1 --mode bonferroni --weights 1:4 -o cal.json\n  \
    confseg calibrate --masks M.npy --inner-scores A.npy --outer-scores B.npy \\\n    \
    --exclude learning_idx.npy --alpha 0.1 --mode max -o cal.json\n  \
    confseg calibrate --masks M.npy --scores P.npy --alpha 0.1 --mode risk-control --risk recall \\\n    \
    --delta 0.1 --bound wsr --grid 0:0.99:0.01 -o rcps.json")]
pub struct Args {
    #[command(flatten)]
    pub inputs: CalibrationInputs,
    #[command(flatten)]
    pub levels: LevelArgs,
    /// Write the calibration JSON here (atomically); without it, JSON goes
    /// to stdout and the summary to stderr.
    #[arg(short, long, value_name = "FILE.json")]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub groups: GroupArgs,
}

/// Group-conditional calibration.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct GroupArgs {
    /// Calibrate per group (site, scanner, ...): a 1-D integer .npy of one group label per image of the
    /// score files. Thresholds are fitted per group, so the guarantee holds within each group. A
    /// manifest's group column does the same. `predict` then needs each new image's group.
    #[arg(long, value_name = "G.npy")]
    pub groups: Option<PathBuf>,
    /// Calibrate per stratum of the predictions, by edges fixed before calibration:
    /// predicted-volume=E1,E2,...[mm3] (voxels of scores > --mask-threshold, or mm3 with the
    /// spacing) or max-score=E1,E2,...; `predict` recomputes each new image's stratum.
    #[arg(long, value_name = "SPEC", conflicts_with = "groups")]
    pub strata: Option<confseg::groups::Strata>,
    /// With groups: pool the groups too small for finite thresholds into one fit (their guarantee is
    /// then marginal over the pooled groups) instead of giving them infinite thresholds.
    #[arg(long)]
    pub pool_small_groups: bool,
}

/// Run `calibrate`.
pub fn run(args: Args) -> Result<()> {
    let guarantee = args.levels.levels().guarantee()?;
    let request = args.inputs.request()?;
    let (inputs, bar) = args.inputs.open("calibrating")?;
    let scores = inputs.scores();
    if inputs.images.is_empty() {
        if scores.n_images() == 0 {
            anyhow::bail!("{}: the stack holds no images", scores.describe());
        }
        anyhow::bail!(
            "no calibration images: --indices/--exclude leave none of the {} images",
            scores.n_images()
        );
    }
    let labels = confseg::pipeline::image_groups(scores, args.groups.groups.as_deref(), &inputs.images)?;
    let grouping = match (&args.groups.strata, labels) {
        (Some(_), Some(_)) => usage!("--strata: the manifest has a group column; give the groups one way"),
        (Some(strata), None) => Some(Grouping::Strata(strata.clone())),
        (None, Some(labels)) => Some(Grouping::Labels(labels)),
        (None, None) => None,
    };
    if let Some(grouping) = grouping {
        return grouped(&args, guarantee, &inputs, &request, &grouping, &bar);
    }
    if args.groups.pool_small_groups {
        usage!("--pool-small-groups needs groups: --groups G.npy or a group column in the manifest");
    }
    let (sets, calibration) = match guarantee {
        Guarantee::RiskControl(level) => {
            let risk = inputs.risk_statistics(level.risk())?;
            (inputs.calibrator.fit_risk_control(&risk, level)?, None)
        }
        Guarantee::Conformal(mode) => {
            let calibration = inputs.statistics()?;
            (inputs.calibrator.fit(&calibration, mode)?, Some(calibration))
        }
    };
    bar.finish_and_clear();
    let mut file = Fitted::new(sets, inputs.record(&request));
    if let Some(c) = &calibration {
        file = file.with_statistics(c);
    }
    let mut summary = String::new();
    if inputs.images.len() != scores.n_images() {
        summary += &format!("images: {} of {} selected\n", inputs.images.len(), scores.n_images());
    }
    summary += &if scores.is_transformed() {
        let files = &args.inputs.files;
        let given =
            |p: &Option<PathBuf>| format!("given in {}", p.as_deref().unwrap_or(scores.path()).display());
        report::summary_with(&file.sets, &given(&files.inner_scores), &given(&files.outer_scores))
    } else {
        report::summary(&file.sets)
    };
    summary += &report::provenance_lines(&file.sets, &file.record, scores.precision()?);
    if inputs.reader.cohort_spacing && scores.cohort().is_some() {
        summary += "spacing: --spacing overrides the spacing in the files' headers\n";
    }
    write(&file, &summary, args.output.as_deref())?;
    report::warn(&inputs.warnings());
    report::warn(&calibration.map_or_else(|| file.sets.warnings(), |c| c.warnings(&file.sets)));
    Ok(())
}

/// Calibrate per group and write the file of sets per group.
fn grouped(
    args: &Args,
    guarantee: Guarantee,
    inputs: &confseg::pipeline::Inputs,
    request: &confseg::pipeline::Request,
    grouping: &Grouping,
    bar: &indicatif::ProgressBar,
) -> Result<()> {
    let policy = if args.groups.pool_small_groups { SmallGroups::Pool } else { SmallGroups::Infinite };
    let fit = inputs.fit_groups(guarantee, grouping, policy);
    bar.finish_and_clear();
    let fit = fit?;
    let mut record = inputs.record(request);
    record.source.groups.clone_from(&args.groups.groups);
    let file = Fitted::new(fit.sets.clone(), record);
    let scores = inputs.scores();
    let mut summary = String::new();
    if inputs.images.len() != scores.n_images() {
        summary += &format!("images: {} of {} selected\n", inputs.images.len(), scores.n_images());
    }
    summary += &report::grouped_summary(&file.sets);
    if let Some(first) = file.sets.fits().next() {
        summary += &report::provenance_lines(first, &file.record, scores.precision()?);
    }
    write(&file, &summary, args.output.as_deref())?;
    report::warn(&inputs.warnings());
    report::warn(&fit.warnings()?);
    Ok(())
}

/// Write the fitted file to `output` and the summary to stdout; without
/// `output`, the JSON to stdout and the summary to stderr.
fn write<S>(file: &Fitted<S>, summary: &str, output: Option<&std::path::Path>) -> Result<()>
where
    S: serde::Serialize + for<'de> serde::Deserialize<'de>,
{
    match output {
        Some(path) => {
            file.write(path)?;
            report::out(summary)?;
            report::out(&format!("wrote {}\n", path.display()))?;
        }
        None => {
            report::out(&file.to_json()?)?;
            eprint!("{summary}");
        }
    }
    Ok(())
}
