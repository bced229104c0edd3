//! `confseg transform`: write a transformed score stack.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;
use confseg::io::{NpyWriter, Precision, ReadFloat, WriteElement};
use confseg::pipeline::{default_in_flight, stream, Load};
use confseg::transform::apply_checked;
use confseg::{AsImage, Float, ScoreTransform, Spacing};

use crate::cli::inputs::{blame, parse_transform, Reader, ScoreFiles, ScoreSource, TransformOptions};
use crate::cli::report::{self, outln, usage};

/// Output element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutDtype {
    /// float32.
    F32,
    /// float64.
    F64,
}

/// Apply one score transform to every image of a stack and write the
/// result (float, same shape; +inf/-inf where the transform defines them).
/// Images stream through in the file's precision and the output is written
/// as they come, appearing complete at the end.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Score stack (N, spatial...) of any numeric dtype.
    #[arg(long, value_name = "S.npy")]
    pub scores: PathBuf,
    /// The transform: identity, sigmoid, distance[:metric], gaussian:FWHM, box-inner, box-outer, ...
    #[arg(long, value_name = "NAME")]
    pub transform: String,
    #[command(flatten)]
    pub options: TransformOptions,
    /// Output element type (default: float32 when the scores are computed in
    /// float32, i.e. float16/float32/small integers, else float64).
    #[arg(long, value_enum)]
    pub dtype: Option<OutDtype>,
    /// Write the transformed stack here (atomically).
    #[arg(short, long, value_name = "OUT.npy")]
    pub output: PathBuf,
}

/// Run `transform`.
pub fn run(args: Args) -> Result<()> {
    let t = args.options.apply(parse_transform(&args.transform, None)?)?;
    let files = ScoreFiles { scores: Some(args.scores.clone()), inner_scores: None, outer_scores: None };
    let source = ScoreSource::open(&files, args.options.class_axis)?;
    let ndim = source.image_shape().len();
    let spacing = args.options.spacing.spacing();
    spacing.for_ndim(ndim).context("--spacing")?;
    let spacings = args.options.spacing.spacings(source.n_images(), ndim)?;
    let precision = source.precision();
    let dtype = args.dtype.unwrap_or(if precision == Precision::F32 { OutDtype::F32 } else { OutDtype::F64 });
    match (precision, dtype) {
        (Precision::F32, OutDtype::F32) => write::<f32, f32>(&args, &t, &source, &spacing, spacings.clone()),
        (Precision::F32, OutDtype::F64) => write::<f32, f64>(&args, &t, &source, &spacing, spacings.clone()),
        (Precision::F64, OutDtype::F64) => write::<f64, f64>(&args, &t, &source, &spacing, spacings.clone()),
        (Precision::F64, OutDtype::F32) => {
            usage!("{} holds values that need float64; --dtype f32 would round them", args.scores.display())
        }
    }?;
    outln!(
        "wrote {} ({} images of {:?}, {}) = {t} of {}",
        args.output.display(),
        source.n_images(),
        source.image_shape(),
        if dtype == OutDtype::F32 { "float32" } else { "float64" },
        args.scores.display()
    );
    Ok(())
}

/// Transform in `A` (images read by the worker threads), write in `B`
/// (`B` at least as wide).
fn write<A: ReadFloat, B: Float + WriteElement>(
    args: &Args,
    t: &ScoreTransform,
    source: &ScoreSource,
    spacing: &Spacing,
    spacings: Option<Vec<Spacing>>,
) -> Result<()> {
    let n = source.n_images();
    let mut w = NpyWriter::create::<B>(&args.output, n, &source.image_shape())?;
    let all: Vec<usize> = (0..n).collect();
    let reader = Arc::new(Reader {
        scores: source.clone(),
        spacings,
        masks: None,
        bar: report::progress("transforming", n, source.voxels_per_image()),
    });
    stream(
        reader.items(&all, |r, i| r.scan::<A>(i)),
        default_in_flight(),
        |i, item| {
            let scan = item.load()?;
            let sp = scan.spacing().unwrap_or(spacing);
            let out = apply_checked(t, scan.scores(), sp).map_err(|e| e.in_image(i))?;
            Ok(out.mapv(|x| B::from_f64_lossy(x.to_f64_lossless())))
        },
        |_, img| w.push(&img),
    )
    .map_err(|e| blame(e, &all, source, None))?;
    reader.bar.finish_and_clear();
    w.finish()?;
    Ok(())
}
