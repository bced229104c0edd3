//! `confseg report`: one self-contained HTML file about a calibration file
//! and its sets on new images (a shell over `confseg::html`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;
use confseg::html::{prediction_page, ReportOptions, DEFAULT_SLICES, DEFAULT_SUBJECTS};
use confseg::pipeline::record::FittedFile;
use confseg::pipeline::Reader;
use confseg::Spacing;

use crate::cli::inputs::{MaskArgs, ScoreFiles, SpacingArgs};
use crate::cli::report::{self, outln, usage};

/// Write one HTML file, pictures embedded: the guarantee and the thresholds in words, histograms of the
/// calibration statistics with the thresholds marked, coverage with --masks, set sizes, and slices
/// through the first --subjects images with the inner, outer (and true) contours.
///
/// Inputs are read as `predict` reads them (stacks, NIfTI folders, globs, manifests; the calibration
/// file's transforms, class axis and spacing).
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Example:\n  \
    confseg report --calibration cal.json --scores new/ --masks truth/ -o report.html")]
pub struct Args {
    /// Calibration file written by `confseg calibrate` (sets of one structure).
    #[arg(long, value_name = "FILE.json")]
    pub calibration: PathBuf,
    #[command(flatten)]
    pub files: ScoreFiles,
    #[command(flatten)]
    pub spacing: SpacingArgs,
    /// With --masks (true masks of these images): coverage of the guaranteed events with exact 95%
    /// intervals, and the true contour in the slices.
    #[command(flatten)]
    pub truth: MaskArgs,
    /// Write the report here (one HTML file, written atomically).
    #[arg(short, long, value_name = "FILE.html")]
    pub output: PathBuf,
    /// Show slices of the first N images (1 to 200).
    #[arg(allow_hyphen_values = true, long, value_name = "N", default_value_t = DEFAULT_SUBJECTS)]
    pub subjects: usize,
    /// Slices per 3-D image (1 to 12): where the object is largest, and spread over its extent.
    #[arg(allow_hyphen_values = true, long, value_name = "K", default_value_t = DEFAULT_SLICES)]
    pub slices: usize,
    /// The report's title.
    #[arg(long, value_name = "TEXT")]
    pub title: Option<String>,
}

/// Run `report`.
pub fn run(args: Args) -> Result<()> {
    let file = match FittedFile::read(&args.calibration)? {
        FittedFile::Sets(file) => *file,
        FittedFile::Groups(_) | FittedFile::Structures(_) => usage!(
            "{}: the report reads a calibration of one structure without groups; for this file use \
             `confseg predict --masks` for coverage and --overlay-dir for pictures",
            args.calibration.display()
        ),
    };
    let (source, masks) =
        args.files.open_like(&file.record, &args.calibration, args.truth.masks.as_deref())?;
    let n = source.n_images();
    let ndim = source.ndim()?;
    let spacings = args.spacing.source().per_image(n, ndim)?;
    let own: Option<Vec<Spacing>> = match (spacings, &args.spacing.spacing) {
        (Some(v), _) => Some(v),
        (None, Some(s)) => Some(vec![s.clone(); n]),
        (None, None) => None,
    };
    let bar = report::progress("predicting", n, source.voxels_per_image());
    let reader = Arc::new(Reader {
        spacings: own.map(Arc::from),
        cohort_spacing: args.spacing.spacing.is_some(),
        tick: Some(report::tick(&bar)),
        masks: masks
            .map(|m| {
                Ok::<_, confseg::Error>((
                    m,
                    file.record.coding(args.truth.selection(), args.truth.ignore_label)?,
                ))
            })
            .transpose()?,
        ..Reader::new(source)
    });
    let options = ReportOptions {
        title: args.title.clone().unwrap_or_else(|| "Conformal segmentation report".into()),
        calibration: args.calibration.display().to_string(),
        subjects: args.subjects,
        slices: args.slices,
    };
    let (page, summary) = prediction_page(&reader, &file.sets, file.statistics.as_ref(), &options)?;
    bar.finish_and_clear();
    page.write(&args.output)?;
    outln!("wrote the report on {n} images to {}", args.output.display());
    if file.statistics.is_none() && matches!(file.sets.guarantee(), confseg::levels::Guarantee::Conformal(_))
    {
        eprintln!(
            "note: {} keeps no calibration statistics; the report has no histograms (calibrate again to get them)",
            args.calibration.display()
        );
    }
    report::warn(&file.sets.warnings());
    report::warn(&summary.warnings(&file.sets));
    Ok(())
}
