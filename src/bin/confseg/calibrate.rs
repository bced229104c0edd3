//! `confseg calibrate`: thresholds from labelled images, written as JSON.

use std::path::PathBuf;

use anyhow::Result;
use confseg::Guarantee;

use crate::cli::calibration_file::{CalibrationFile, Source};
use crate::cli::inputs::{CalibrationInputs, ScoreSource};
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
    --exclude learning_idx.npy --alpha 0.1 --mode max -o cal.json")]
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
    if !args.inputs.structures.structures.is_empty() {
        return crate::cli::structures::calibrate(&args);
    }
    let guarantee = args.levels.levels().guarantee()?;
    let opened = args.inputs.open()?;
    if opened.images.is_empty() {
        if opened.scores.n_images() == 0 {
            anyhow::bail!("{}: the stack holds no images", opened.scores.describe());
        }
        anyhow::bail!(
            "no calibration images: --indices/--exclude leave none of the {} images",
            opened.scores.n_images()
        );
    }
    let (sets, calibration) = match guarantee {
        Guarantee::RiskControl(level) => {
            let risk = opened.risk_statistics()?;
            (opened.calibrator.fit_risk_control(&risk, level)?, None)
        }
        Guarantee::Conformal(mode) => {
            let calibration = opened.statistics()?;
            (opened.calibrator.fit(&calibration, mode)?, Some(calibration))
        }
    };
    let files = &args.inputs.files;
    let file = CalibrationFile {
        sets,
        input: opened.scores.kind(),
        class_axis: opened.scores.class_axis(),
        labels: opened.labels.clone(),
        source: Source {
            masks: args.inputs.masks.masks.clone(),
            manifest: files.subjects.manifest.clone(),
            scores: files.scores.clone(),
            inner_scores: files.inner_scores.clone(),
            outer_scores: files.outer_scores.clone(),
            spacing_file: args.inputs.options.spacing.spacing_file.clone(),
            exclude: args.inputs.selection.exclude.clone(),
            indices: args.inputs.selection.indices.clone(),
            images_in_files: Some(opened.scores.n_images()),
        },
    };
    let mut summary = String::new();
    if opened.images.len() != opened.scores.n_images() {
        summary += &format!("images: {} of {} selected\n", opened.images.len(), opened.scores.n_images());
    }
    summary += &match &opened.scores {
        ScoreSource::Transformed { .. } => {
            let given = |p: &Option<PathBuf>| {
                format!("given in {}", p.as_deref().unwrap_or(opened.scores.path()).display())
            };
            report::summary_with(&file.sets, &given(&files.inner_scores), &given(&files.outer_scores))
        }
        ScoreSource::Raw { .. } | ScoreSource::Subjects { .. } => report::summary(&file.sets),
    };
    summary += &report::provenance_lines(&file, opened.scores.precision()?);
    if opened.cohort_spacing && matches!(opened.scores, ScoreSource::Subjects { .. }) {
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
    report::warn(&opened.warnings());
    report::warn(&calibration.map_or_else(|| file.sets.warnings(), |c| c.warnings(&file.sets)));
    Ok(())
}
