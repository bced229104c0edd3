//! `confseg predict`: inner and outer sets for new images.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use confseg::io::{NpyWriter, Precision, ReadFloat};
use confseg::pipeline::{default_in_flight, stream, Load};
use confseg::Spacing;
use ndarray::{ArrayD, IxDyn};

use crate::cli::calibration_file::{CalibrationFile, InputKind};
use crate::cli::inputs::{blame, Reader, ScoreFiles, ScoreSource, SpacingArgs};
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
    /// Write the inner sets here (uint8 0/1, same shape as the score stack).
    #[arg(long, value_name = "I.npy", required_unless_present_any = ["outer_out", "overlay_dir", "out_dir"])]
    pub inner_out: Option<PathBuf>,
    /// Write the outer sets here (uint8 0/1, same shape as the scores).
    #[arg(long, value_name = "O.npy")]
    pub outer_out: Option<PathBuf>,
    /// For per-subject scores: write ID_inner and ID_outer per subject here, in the subject's format
    /// (.nii.gz with its header and affine, so they overlay on the scan; or .npy).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    #[command(flatten)]
    pub overlay: crate::cli::figures::OverlayArgs,
}

/// Where the sets go: two stacks, or two files per subject.
// One per run: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
enum Outputs {
    /// `--inner-out`/`--outer-out` stacks, written image by image.
    Stacks { inner: Option<NpyWriter>, outer: Option<NpyWriter> },
    /// `--out-dir`: `ID_inner`, `ID_outer` per subject, in the subject's format.
    Subjects { dir: PathBuf, cohort: Arc<confseg::io::cohort::Cohort> },
}

impl Outputs {
    /// Write image `i`'s sets (for subjects: both files, or neither).
    fn push(&mut self, i: usize, s: &confseg::Sets<IxDyn>) -> confseg::Result<()> {
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
            Outputs::Subjects { dir, cohort } => {
                let out = |suffix: &str, set: &ndarray::ArrayD<bool>| {
                    cohort.mask_output(i, &cohort.output_path(i, dir, suffix)?, &set.mapv(u8::from))
                };
                confseg::io::commit_all(vec![out("_inner", &s.inner)?, out("_outer", &s.outer)?])
            }
        }
    }

    /// Publish the stacks, both or neither.
    fn finish(self) -> confseg::Result<()> {
        match self {
            Outputs::Stacks { inner, outer } => {
                let outputs: Vec<confseg::io::Output> = [inner, outer]
                    .into_iter()
                    .flatten()
                    .map(NpyWriter::into_output)
                    .collect::<confseg::Result<_>>()?;
                confseg::io::commit_all(outputs)
            }
            Outputs::Subjects { .. } => Ok(()),
        }
    }
}

/// Run `predict`.
pub fn run(args: Args) -> Result<()> {
    if let (Some(a), Some(b)) = (&args.inner_out, &args.outer_out) {
        if a == b || a.canonicalize().ok().is_some_and(|x| b.canonicalize().ok() == Some(x)) {
            usage!("--inner-out and --outer-out name the same file {}", a.display());
        }
    }
    let text = crate::cli::calibration_file::read_text(&args.calibration)?;
    if crate::cli::structures::is_structures_file(&text) {
        let file: crate::cli::structures::StructuresFile = serde_json::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a valid confseg calibration file: {}",
                args.calibration.display(),
                e.to_string().replace(['\n', '\r'], " ")
            )
        })?;
        return crate::cli::structures::predict(&args, &file);
    }
    let file = CalibrationFile::parse(&args.calibration, &text)?;
    if file.input == InputKind::Transformed && args.files.inner_scores.is_none() {
        usage!(
            "{} was calibrated on transformed scores: give --inner-scores and --outer-scores",
            args.calibration.display()
        );
    }
    let class_axis = if args.files.inner_scores.is_none() { file.class_axis.map(|k| k as i64) } else { None };
    let (source, _) = ScoreSource::open(&args.files, None, class_axis)?;
    let subjects = matches!(source, ScoreSource::Subjects { .. });
    if subjects && (args.inner_out.is_some() || args.outer_out.is_some()) {
        usage!("per-subject scores are written per subject: give --out-dir DIR instead of --inner-out/--outer-out");
    }
    if !subjects && args.out_dir.is_some() {
        usage!("--out-dir is for per-subject scores; a stack's sets go to --inner-out/--outer-out");
    }
    let ndim = source.ndim()?;
    if let Some(nd) = file.sets.ndim() {
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
    let spacings = args.spacing.spacings(source.n_images(), ndim)?;
    if let Some(s) = &args.spacing.spacing {
        s.for_ndim(ndim).context("--spacing")?;
    }
    let own: Option<Vec<Spacing>> = match (&spacings, &args.spacing.spacing) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(s)) => Some(vec![s.clone(); source.n_images()]),
        (None, None) => None,
    };
    let outputs = match (&source, &args.out_dir) {
        (ScoreSource::Subjects { cohort, .. }, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
            Outputs::Subjects { dir: dir.clone(), cohort: Arc::clone(cohort) }
        }
        _ => {
            let shape = source.stack_shape().unwrap_or_default();
            let n = source.n_images();
            let create =
                |p: &Option<PathBuf>| p.as_ref().map(|p| NpyWriter::create::<u8>(p, n, &shape)).transpose();
            Outputs::Stacks { inner: create(&args.inner_out)?, outer: create(&args.outer_out)? }
        }
    };
    let counts = match source.precision()? {
        Precision::F32 => predict_in::<f32>(&args, &file, &source, own, outputs)?,
        Precision::F64 => predict_in::<f64>(&args, &file, &source, own, outputs)?,
    };
    let voxels = counts.4.max(1) as f64;
    outln!(
        "{} images: inner sets cover {:.2}% and outer sets {:.2}% of the voxels",
        source.n_images(),
        100.0 * counts.0 as f64 / voxels,
        100.0 * counts.1 as f64 / voxels
    );
    for (path, name) in [(&args.inner_out, "inner"), (&args.outer_out, "outer")] {
        if let Some(path) = path {
            outln!("wrote {name} sets to {}", path.display());
        }
    }
    if let Some(dir) = &args.out_dir {
        outln!("wrote ID_inner and ID_outer for {} subjects to {}", source.n_images(), dir.display());
    }
    if let Some(dir) = &args.overlay.overlay_dir {
        outln!("wrote {} overlays to {}", source.n_images(), dir.display());
    }
    report::warn(&file.sets.warnings());
    let n = source.n_images();
    let (li, lo) = (file.sets.thresholds().inner.value(), file.sets.thresholds().outer.value());
    if counts.2 == n && li.is_finite() {
        report::warn(&[confseg::Warning::InnerAlwaysEmpty { images: n, lambda: li }]);
    }
    if counts.3 == n && lo.is_finite() {
        report::warn(&[confseg::Warning::OuterAlwaysEverything { images: n, lambda: lo }]);
    }
    Ok(())
}

/// Predict every image in the float type `A` (read by the worker
/// threads), writing as images arrive; returns the numbers of inner and
/// outer voxels, of images with an empty inner set and with an outer set
/// that is the whole image, and of voxels in all.
fn predict_in<A: ReadFloat>(
    args: &Args,
    file: &CalibrationFile,
    source: &ScoreSource,
    own: Option<Vec<Spacing>>,
    mut outputs: Outputs,
) -> Result<(usize, usize, usize, usize, usize)> {
    let n = source.n_images();
    let overlays = crate::cli::figures::Overlays::new(&args.overlay, source)?;
    let keep = overlays.is_some();
    let sets = &file.sets;
    let all: Vec<usize> = (0..n).collect();
    let mut counts = (0usize, 0usize, 0usize, 0usize, 0usize);
    let reader = Arc::new(Reader {
        scores: source.clone(),
        spacings: own,
        cohort_spacing: args.spacing.spacing.is_some(),
        masks: None,
        bar: report::progress("predicting", n, source.voxels_per_image()),
    });
    type Item<A> = (Option<(ArrayD<A>, Option<Spacing>)>, confseg::Sets<IxDyn>);
    let mut sink = |i: usize, (background, s): Item<A>| -> confseg::Result<()> {
        let (ni, no) = (s.inner.iter().filter(|&&b| b).count(), s.outer.iter().filter(|&&b| b).count());
        counts.0 += ni;
        counts.1 += no;
        counts.2 += usize::from(ni == 0);
        counts.3 += usize::from(no == s.outer.len());
        counts.4 += s.outer.len();
        outputs.push(i, &s)?;
        if let (Some(o), Some((bg, spacing))) = (&overlays, &background) {
            o.draw(i, bg, spacing.as_ref(), &s)?;
        }
        Ok(())
    };
    let result = match source {
        ScoreSource::Transformed { .. } => stream(
            reader.items(&all, |r, i| r.scores.read_transformed::<A>(i)),
            default_in_flight(),
            |i, item| {
                let t = item.load()?;
                let (fi, fo) = t.sides();
                let s = sets.predict_transformed(fi, fo).map_err(|e| e.in_image(i))?;
                let background = keep.then_some(match t {
                    confseg::Transformed::Shared(a) | confseg::Transformed::Separate { inner: a, .. } => {
                        (a, None)
                    }
                });
                Ok((background, s))
            },
            &mut sink,
        ),
        _ => stream(
            reader.items(&all, |r, i| r.scan::<A>(i)),
            default_in_flight(),
            |i, item| {
                let scan = item.load()?;
                let s = sets.predict(&scan).map_err(|e| e.in_image(i))?;
                let spacing = confseg::AsImage::spacing(&scan).cloned();
                Ok((keep.then(|| (scan.into_scores(), spacing)), s))
            },
            &mut sink,
        ),
    };
    reader.bar.finish_and_clear();
    result.map_err(|e| blame(e, &all, source, None))?;
    outputs.finish()?;
    Ok(counts)
}
