//! `confseg calibrate`: thresholds from labelled images, written as JSON.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::inputs::CalibrationInputs;
use crate::cli::levels::LevelArgs;
use crate::cli::report;

/// Calibrate on masks and scores (raw with --inner/--outer transforms, or
/// already transformed) at the given levels.
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
    let mode = args.levels.mode()?;
    let loaded = args.inputs.load()?;
    let calibration = loaded.statistics()?;
    let file = loaded.fit(&calibration, mode)?;
    let mut summary = String::new();
    if let Some(total) = file.source.images_in_files {
        if total != file.sets.n() {
            summary += &format!("images: {} of {total} selected\n", file.sets.n());
        }
    }
    summary += &match (&file.source.inner_scores, &file.source.outer_scores) {
        (Some(a), Some(b)) => report::summary_with(
            &file.sets,
            &format!("given in {}", a.display()),
            &format!("given in {}", b.display()),
        ),
        _ => report::summary(&file.sets),
    };
    match &args.output {
        Some(path) => {
            file.write(path)?;
            print!("{summary}");
            println!("wrote {}", path.display());
        }
        None => {
            print!("{}", file.to_json()?);
            eprint!("{summary}");
        }
    }
    report::warn_thresholds(&file.sets);
    Ok(())
}
