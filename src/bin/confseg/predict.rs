//! `confseg predict`: inner and outer sets for new images.

use std::path::PathBuf;

use anyhow::Result;

use crate::cli::calibration_file::{CalibrationFile, InputKind};
use crate::cli::inputs::{ScoreFiles, Scores};
use crate::cli::report::{self, usage};

/// Inner and outer masks for a score stack, from a calibration file.
///
/// The transforms, spacing and class axis recorded in the calibration file
/// are applied to --scores. --inner-scores/--outer-scores are used as they
/// are (required if the calibration was on transformed scores).
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Calibration file written by `confseg calibrate`.
    #[arg(long, value_name = "FILE.json")]
    pub calibration: PathBuf,
    #[command(flatten)]
    pub files: ScoreFiles,
    /// Write the inner sets here (uint8 0/1, same shape as the scores).
    #[arg(long, value_name = "I.npy", required_unless_present_any = ["outer_out", "overlay_dir"])]
    pub inner_out: Option<PathBuf>,
    /// Write the outer sets here (uint8 0/1, same shape as the scores).
    #[arg(long, value_name = "O.npy")]
    pub outer_out: Option<PathBuf>,
    #[command(flatten)]
    pub overlay: crate::cli::figures::OverlayArgs,
}

/// Run `predict`.
pub fn run(args: Args) -> Result<()> {
    let file = CalibrationFile::read(&args.calibration)?;
    if file.input == InputKind::Transformed && args.files.scores.is_some() {
        usage!(
            "{} was calibrated on transformed scores: give --inner-scores and --outer-scores",
            args.calibration.display()
        );
    }
    let class_axis = if args.files.scores.is_some() { file.class_axis } else { None };
    let scores = Scores::load(&args.files, class_axis)?;
    let sets = scores.predict(&file.sets)?;
    crate::cli::figures::write_overlays(&args.overlay, &scores, &sets)?;
    for (path, set) in [(&args.inner_out, &sets.inner), (&args.outer_out, &sets.outer)] {
        if let Some(path) = path {
            confseg::io::write_masks(path, set)?;
        }
    }
    let voxels = sets.inner.len().max(1) as f64;
    let frac = |a: &ndarray::ArrayD<bool>| a.iter().filter(|&&b| b).count() as f64 / voxels;
    println!(
        "{} images: inner sets cover {:.2}% and outer sets {:.2}% of the voxels",
        scores.n_images(),
        100.0 * frac(&sets.inner),
        100.0 * frac(&sets.outer)
    );
    for (path, name) in [(&args.inner_out, "inner"), (&args.outer_out, "outer")] {
        if let Some(path) = path {
            println!("wrote {name} sets to {}", path.display());
        }
    }
    report::warn_thresholds(&file.sets);
    Ok(())
}
