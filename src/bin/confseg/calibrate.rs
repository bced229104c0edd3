//! `confseg calibrate`: thresholds from labelled images, written as JSON.

use std::path::PathBuf;

use anyhow::Result;
use confseg::Guarantee;

use confseg::pipeline::Fitted;

use crate::cli::inputs::CalibrationInputs;
use crate::cli::levels::LevelArgs;
use crate::cli::report;

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
    let file = Fitted { sets, record: inputs.record(&request) };
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
    summary += &report::provenance_lines(&file, scores.precision()?);
    if inputs.reader.cohort_spacing && scores.cohort().is_some() {
        summary += "spacing: --spacing overrides the spacing in the files' headers\n";
    }
    match &args.output {
        Some(path) => {
            file.write(path)?;
            report::out(&summary)?;
            report::out(&format!("wrote {}\n", path.display()))?;
        }
        None => {
            report::out(&file.to_json()?)?;
            eprint!("{summary}");
        }
    }
    report::warn(&inputs.warnings());
    report::warn(&calibration.map_or_else(|| file.sets.warnings(), |c| c.warnings(&file.sets)));
    Ok(())
}
