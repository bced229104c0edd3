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

/// Inner and outer masks for a score stack, from a calibration file.
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
    if let (Some(a), Some(b)) = (&args.inner_out, &args.outer_out) {
        if a == b || a.canonicalize().ok().is_some_and(|x| b.canonicalize().ok() == Some(x)) {
            usage!("--inner-out and --outer-out name the same file {}", a.display());
        }
    }
    let file = CalibrationFile::read(&args.calibration)?;
    if file.input == InputKind::Transformed && args.files.scores.is_some() {
        usage!(
            "{} was calibrated on transformed scores: give --inner-scores and --outer-scores",
            args.calibration.display()
        );
    }
    let class_axis = if args.files.scores.is_some() { file.class_axis.map(|k| k as i64) } else { None };
    let source = ScoreSource::open(&args.files, class_axis)?;
    let shape = source.image_shape();
    if let Some(nd) = file.sets.ndim() {
        if nd != shape.len() {
            let hint = if shape.len() + 1 == nd {
                format!(
                    " (it reads as {} images of {}-D; for one {nd}-D image, add a batch axis of length 1)",
                    source.n_images(),
                    shape.len()
                )
            } else {
                String::new()
            };
            anyhow::bail!(
                "{}: {} was calibrated on {nd}-D images, so a stack (N, ...) with {} axes is expected; \
                 the file has shape {:?}{hint}",
                source.describe(),
                args.calibration.display(),
                nd + 1,
                std::iter::once(source.n_images()).chain(shape.iter().copied()).collect::<Vec<_>>()
            );
        }
    }
    let spacings = args.spacing.spacings(source.n_images(), shape.len())?;
    if let Some(s) = &args.spacing.spacing {
        s.for_ndim(shape.len()).context("--spacing")?;
    }
    let own: Option<Vec<Spacing>> = match (&spacings, &args.spacing.spacing) {
        (Some(v), _) => Some(v.clone()),
        (None, Some(s)) => Some(vec![s.clone(); source.n_images()]),
        (None, None) => None,
    };
    let counts = match source.precision() {
        Precision::F32 => predict_in::<f32>(&args, &file, &source, own)?,
        Precision::F64 => predict_in::<f64>(&args, &file, &source, own)?,
    };
    let voxels = (source.n_images() * source.voxels_per_image()).max(1) as f64;
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
    if let Some(dir) = &args.overlay.overlay_dir {
        outln!("wrote {} overlays to {}", source.n_images(), dir.display());
    }
    report::warn(&file.sets.warnings(None));
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
/// outer voxels.
fn predict_in<A: ReadFloat>(
    args: &Args,
    file: &CalibrationFile,
    source: &ScoreSource,
    own: Option<Vec<Spacing>>,
) -> Result<(usize, usize, usize, usize)> {
    let n = source.n_images();
    let shape = source.image_shape();
    let create = |p: &Option<PathBuf>| p.as_ref().map(|p| NpyWriter::create::<u8>(p, n, &shape)).transpose();
    let (mut inner_w, mut outer_w) = (create(&args.inner_out)?, create(&args.outer_out)?);
    let overlays = crate::cli::figures::Overlays::new(&args.overlay, n)?;
    let keep = overlays.is_some();
    let sets = &file.sets;
    let all: Vec<usize> = (0..n).collect();
    // inner voxels, outer voxels, images with an empty inner set, images whose outer set is everything
    let mut counts = (0usize, 0usize, 0usize, 0usize);
    let reader = Arc::new(Reader {
        scores: source.clone(),
        spacings: own,
        masks: None,
        bar: report::progress("predicting", n, source.voxels_per_image()),
    });
    let mut sink =
        |i: usize, (background, s): (Option<ArrayD<A>>, confseg::Sets<IxDyn>)| -> confseg::Result<()> {
            let (ni, no) = (s.inner.iter().filter(|&&b| b).count(), s.outer.iter().filter(|&&b| b).count());
            counts.0 += ni;
            counts.1 += no;
            counts.2 += usize::from(ni == 0);
            counts.3 += usize::from(no == s.outer.len());
            if let Some(w) = &mut inner_w {
                w.push(&s.inner.mapv(u8::from))?;
            }
            if let Some(w) = &mut outer_w {
                w.push(&s.outer.mapv(u8::from))?;
            }
            if let (Some(o), Some(bg)) = (&overlays, &background) {
                o.draw(i, bg, &s)?;
            }
            Ok(())
        };
    let result = match source {
        ScoreSource::Raw { .. } => stream(
            reader.items(&all, |r, i| r.scan::<A>(i)),
            default_in_flight(),
            |i, item| {
                let scan = item.load()?;
                let s = sets.predict(&scan).map_err(|e| e.in_image(i))?;
                Ok((keep.then(|| scan.into_scores()), s))
            },
            &mut sink,
        ),
        ScoreSource::Transformed { .. } => stream(
            reader.items(&all, |r, i| r.scores.read_transformed::<A>(i)),
            default_in_flight(),
            |i, item| {
                let t = item.load()?;
                let (fi, fo) = t.sides();
                let s = sets.predict_transformed(fi, fo).map_err(|e| e.in_image(i))?;
                let background = keep.then_some(match t {
                    confseg::Transformed::Shared(a) | confseg::Transformed::Separate { inner: a, .. } => a,
                });
                Ok((background, s))
            },
            &mut sink,
        ),
    };
    reader.bar.finish_and_clear();
    result.map_err(|e| blame(e, &all, source, None))?;
    let outputs: Vec<confseg::io::Output> = [inner_w, outer_w]
        .into_iter()
        .flatten()
        .map(NpyWriter::into_output)
        .collect::<confseg::Result<_>>()?;
    confseg::io::commit_all(outputs)?;
    Ok(counts)
}
