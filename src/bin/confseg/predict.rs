//! `confseg predict`: inner and outer sets for new images.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use confseg::groups::GroupedSets;
use confseg::io::{NpyWriter, Publication};
use confseg::pipeline::subjects::SubjectOutputs;
use confseg::pipeline::{Extras, Fitted, Reader, SubjectTable};
use confseg::{ConfidenceSets, Spacing};
use ndarray::IxDyn;

use crate::cli::calibration_file::CalibrationFile;
use crate::cli::inputs::{MaskArgs, ScoreFiles, SpacingArgs};
use crate::cli::report::{self, outln, usage};

/// Inner and outer masks for a score stack or per-subject files, from a
/// calibration file.
///
/// The transforms, class axis and spacing recorded in the calibration file
/// are applied to --scores; --spacing/--spacing-file give the new images'
/// spacing (required when the calibration used each image's own spacing
/// and a transform depends on it). --inner-scores/--outer-scores are used
/// as they are (required if the calibration was on transformed scores).
/// Images stream through in the file's precision; both outputs appear
/// together when every image is done, or not at all.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Calibration file written by `confseg calibrate`.
    #[arg(long, value_name = "FILE.json")]
    pub calibration: PathBuf,
    #[command(flatten)]
    pub files: ScoreFiles,
    #[command(flatten)]
    pub spacing: SpacingArgs,
    /// With --masks (true masks of these images; --label/--labels for label maps): check the sets
    /// against them and print the coverage of each guaranteed event with its exact 95% binomial
    /// interval (per subject in --summary).
    #[command(flatten)]
    pub truth: MaskArgs,
    /// Write the inner sets here (uint8 0/1, same shape as the score stack).
    #[arg(long, value_name = "I.npy", required_unless_present_any = ["outer_out", "overlay_dir", "out_dir", "label_map_out", "summary", "masks"])]
    pub inner_out: Option<PathBuf>,
    /// Write the outer sets here (uint8 0/1, same shape as the scores).
    #[arg(long, value_name = "O.npy")]
    pub outer_out: Option<PathBuf>,
    /// For per-subject scores: write ID_inner and ID_outer per subject here, in the subject's format
    /// (.nii.gz with its header and affine, so they overlay on the scan; or .npy).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// For per-subject scores: write one label map ID_sets per subject here (0 outside the outer set,
    /// 1 the band outer minus inner, 2 the inner set; with the subject's header), and the colour tables
    /// confseg_sets.itksnap.txt (ITK-SNAP: Segmentation > Import Label Descriptions) and
    /// confseg_sets.ctbl (3D Slicer), so the sets open over the scan named and coloured.
    #[arg(long, value_name = "DIR")]
    pub label_map_out: Option<PathBuf>,
    /// Write one CSV row per subject (or stack image): inner, band and outer voxels and volumes in mL
    /// (spacing in mm), the band's mean and maximal width in mm (outer contour to inner set), and
    /// empty-inner / whole-outer flags. Published with the run's other outputs.
    #[arg(long, value_name = "FILE.csv")]
    pub summary: Option<PathBuf>,
    #[command(flatten)]
    pub overlay: crate::cli::figures::OverlayArgs,
    /// For a calibration per group: one integer group label per image of the score files (a 1-D .npy),
    /// unless a manifest's group column gives them. Each image gets its group's thresholds.
    #[arg(long, value_name = "G.npy")]
    pub groups: Option<PathBuf>,
}

/// A calibration file: of one fit, or of one fit per group.
pub enum Loaded {
    /// One fit for every image.
    One(CalibrationFile),
    /// A fit per group or stratum.
    Grouped(Fitted<GroupedSets>),
}

impl Loaded {
    fn record(&self) -> &confseg::pipeline::Record {
        match self {
            Loaded::One(f) => &f.record,
            Loaded::Grouped(f) => &f.record,
        }
    }

    fn ndim(&self) -> Option<usize> {
        match self {
            Loaded::One(f) => f.sets.ndim(),
            Loaded::Grouped(f) => f.sets.fits().next().and_then(ConfidenceSets::ndim),
        }
    }
}

/// Where the sets go: two stacks, or files per subject.
// One per run: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Outputs {
    /// `--inner-out`/`--outer-out` stacks, written image by image.
    Stacks { inner: Option<NpyWriter>, outer: Option<NpyWriter> },
    /// `--out-dir` and `--label-map-out`.
    Subjects(SubjectOutputs),
}

impl Outputs {
    /// Write image `i`'s sets: stack rows, or the subject's files staged in `run`.
    fn push(&mut self, i: usize, s: &confseg::Sets<IxDyn>, run: &mut Publication) -> confseg::Result<()> {
        match self {
            Outputs::Stacks { inner, outer } => {
                if let Some(w) = inner {
                    w.push(&s.inner.mapv(u8::from))?;
                }
                if let Some(w) = outer {
                    w.push(&s.outer.mapv(u8::from))?;
                }
                Ok(())
            }
            Outputs::Subjects(o) => o.stage(i, s, run),
        }
    }

    /// Stage the stacks (or the label maps' colour tables) in `run`.
    fn finish(self, run: &mut Publication) -> confseg::Result<()> {
        match self {
            Outputs::Stacks { inner, outer } => {
                let outputs: Vec<confseg::io::Output> = [inner, outer]
                    .into_iter()
                    .flatten()
                    .map(NpyWriter::into_output)
                    .collect::<confseg::Result<_>>()?;
                run.stage_all(outputs)
            }
            Outputs::Subjects(o) => o.finish(run),
        }
    }
}

/// Refuse outputs that name one file twice (before anything is read).
pub fn check_outputs(args: &Args) -> Result<()> {
    let named =
        [("--inner-out", &args.inner_out), ("--outer-out", &args.outer_out), ("--summary", &args.summary)];
    for (k, (flag_a, a)) in named.iter().enumerate() {
        for (flag_b, b) in &named[k + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if confseg::output::same_destination(a, b) {
                    usage!("{flag_a} and {flag_b} name the same file {}", a.display());
                }
            }
        }
    }
    Ok(())
}

/// Run `predict` with fitted sets of one structure (one fit, or one per group).
pub fn run(args: Args, file: Loaded) -> Result<()> {
    if matches!(file, Loaded::One(_)) && args.groups.is_some() {
        usage!("--groups: {} was not calibrated per group", args.calibration.display());
    }
    let (source, masks) =
        args.files.open_like(file.record(), &args.calibration, args.truth.masks.as_deref())?;
    let subjects = source.cohort().is_some();
    if subjects && (args.inner_out.is_some() || args.outer_out.is_some()) {
        usage!("per-subject scores are written per subject: give --out-dir DIR instead of --inner-out/--outer-out");
    }
    if !subjects && (args.out_dir.is_some() || args.label_map_out.is_some()) {
        usage!(
            "--out-dir and --label-map-out are for per-subject scores; a stack's sets go to --inner-out/--outer-out"
        );
    }
    let ndim = source.ndim()?;
    if let Some(nd) = file.ndim() {
        if nd != ndim {
            let shape: Vec<usize> = match source.stack_shape() {
                Some(s) => std::iter::once(source.n_images()).chain(s).collect(),
                None => Vec::new(),
            };
            let hint = if ndim + 1 == nd && !subjects {
                format!(
                    " (it reads as {} images of {ndim}-D; for one {nd}-D image, add a batch axis of length 1)",
                    source.n_images()
                )
            } else {
                String::new()
            };
            anyhow::bail!(
                "{}: {} was calibrated on {nd}-D images; these are {ndim}-D{}{hint}",
                source.describe(),
                args.calibration.display(),
                if shape.is_empty() { String::new() } else { format!(" (the file has shape {shape:?})") }
            );
        }
    }
    let spacings = args.spacing.source().per_image(source.n_images(), ndim)?;
    if let Some(s) = &args.spacing.spacing {
        s.for_ndim(ndim).context("--spacing")?;
    }
    let own: Option<Vec<Spacing>> = match (spacings, &args.spacing.spacing) {
        (Some(v), _) => Some(v),
        (None, Some(s)) => Some(vec![s.clone(); source.n_images()]),
        (None, None) => None,
    };
    let mut outputs = match (source.cohort(), &args.out_dir, &args.label_map_out) {
        (Some(cohort), dir, labels) if dir.is_some() || labels.is_some() => {
            Outputs::Subjects(SubjectOutputs::new(Arc::clone(cohort), dir.clone(), labels.clone())?)
        }
        _ => {
            let shape = source.stack_shape().unwrap_or_default();
            let n = source.n_images();
            let create =
                |p: &Option<PathBuf>| p.as_ref().map(|p| NpyWriter::create::<u8>(p, n, &shape)).transpose();
            Outputs::Stacks { inner: create(&args.inner_out)?, outer: create(&args.outer_out)? }
        }
    };
    let n = source.n_images();
    let overlays = crate::cli::figures::Overlays::new(&args.overlay, &source)?;
    let bar = report::progress("predicting", n, source.voxels_per_image());
    let reader = Arc::new(Reader {
        spacings: own.map(Arc::from),
        cohort_spacing: args.spacing.spacing.is_some(),
        tick: Some(report::tick(&bar)),
        masks: masks
            .map(|m| {
                Ok::<_, confseg::Error>((
                    m,
                    file.record().coding(args.truth.selection(), args.truth.ignore_label)?,
                ))
            })
            .transpose()?,
        ..Reader::new(source.clone())
    });
    let all: Vec<usize> = (0..n).collect();
    // every output of the run (sets, stacks, overlays) is published at the
    // end, all of them or none
    let mut run = Publication::new();
    let extras = Extras { scores: overlays.is_some(), measures: args.summary.is_some() };
    let mut table = SubjectTable::default();
    let mut sink = |i: usize, p: confseg::pipeline::Prediction| {
        if let Some(m) = p.measures {
            table.push(
                source.cohort().map_or_else(|| i.to_string(), |c| c.subjects()[i].id.clone()),
                m,
                p.coverage,
            );
        }
        outputs.push(i, &p.sets, &mut run)?;
        if let (Some(o), Some((scores, spacing))) = (&overlays, &p.scores) {
            o.draw(i, scores, spacing.as_ref(), &p.sets, &mut run)?;
        }
        Ok(())
    };
    let summary = match &file {
        Loaded::One(f) => reader.predict(&f.sets, &all, extras, &mut sink)?,
        Loaded::Grouped(f) if f.sets.strata().is_some() => {
            if args.groups.is_some() {
                usage!(
                    "{} was calibrated per stratum of the predictions ({}): each image's stratum is \
                     recomputed, give no --groups",
                    args.calibration.display(),
                    f.sets.strata().map(|s| s.strata.to_string()).unwrap_or_default()
                );
            }
            reader.predict_strata(&f.sets, &all, extras, &mut sink)?
        }
        Loaded::Grouped(f) => {
            let Some(groups) = confseg::pipeline::image_groups(&source, args.groups.as_deref(), &all)? else {
                let known: Vec<String> = f.sets.sizes().iter().map(|(g, _)| g.to_string()).collect();
                usage!(
                    "{} was calibrated per group (groups {}): give each image's group with --groups G.npy \
                     or a group column in the manifest",
                    args.calibration.display(),
                    known.join(", ")
                );
            };
            reader.predict_grouped(&f.sets, &groups, &all, extras, &mut sink)?
        }
    };
    bar.finish_and_clear();
    outputs.finish(&mut run)?;
    if let Some(path) = &args.summary {
        run.stage_text(path, &table.to_csv())?;
    }
    run.publish()?;
    let voxels = summary.voxels.max(1) as f64;
    outln!(
        "{} images: inner sets cover {:.2}% and outer sets {:.2}% of the voxels",
        n,
        100.0 * summary.inner_voxels as f64 / voxels,
        100.0 * summary.outer_voxels as f64 / voxels
    );
    for (path, name) in [(&args.inner_out, "inner"), (&args.outer_out, "outer")] {
        if let Some(path) = path {
            outln!("wrote {name} sets to {}", path.display());
        }
    }
    if let Some(dir) = &args.out_dir {
        outln!("wrote ID_inner and ID_outer for {} subjects to {}", source.n_images(), dir.display());
    }
    if let Some(dir) = &args.label_map_out {
        outln!(
            "wrote ID_sets label maps (1 band, 2 inner) for {} subjects and the ITK-SNAP and Slicer colour tables to {}",
            source.n_images(),
            dir.display()
        );
    }
    if let Some(dir) = &args.overlay.overlay_dir {
        outln!("wrote {} overlays to {}", source.n_images(), dir.display());
    }
    if let Some(path) = &args.summary {
        outln!("wrote volumes and band widths of {} images to {}", n, path.display());
    }
    if let Some(lines) = summary.coverage_lines() {
        let guarantee = match &file {
            Loaded::One(f) => f.sets.guarantee().to_string(),
            Loaded::Grouped(f) => f.sets.guarantee_text(),
        };
        outln!("against the true masks ({guarantee}):");
        for line in lines {
            outln!("  {line}");
        }
    }
    match &file {
        Loaded::One(f) => {
            report::warn(&f.sets.warnings());
            report::warn(&summary.warnings(&f.sets));
        }
        Loaded::Grouped(f) => report::warn(&f.sets.warnings()),
    }
    Ok(())
}
