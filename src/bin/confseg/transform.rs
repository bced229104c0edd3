//! `confseg transform`: write a transformed score stack.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::ValueEnum;
use confseg::float::Float;
use confseg::image::AsImage;
use confseg::io::{NpyWriter, Precision, Publication, ReadFloat, WriteElement};
use confseg::stream::{default_in_flight, stream, Load};
use confseg::transform::apply_checked;
use confseg::{ScoreTransform, Spacing};

use confseg::pipeline::{Reader, ScoreSource};

use crate::cli::inputs::{ScoreFiles, SubjectArgs, TransformOptions};
use crate::cli::report::{self, outln, usage};

/// Output element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutDtype {
    /// float32.
    F32,
    /// float64.
    F64,
}

/// Apply one score transform to every image of a stack (or every subject)
/// and write the result (float, same shape; +inf/-inf where the transform
/// defines them). Images stream through in the file's precision, each
/// with its own spacing (--spacing-file, or a NIfTI header; --spacing
/// overrides); a stack is written as images come and appears complete at
/// the end, subjects are written one file each.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Scores: a stack (N, spatial...) .npy of any numeric dtype, or per-subject files (folder, quoted
    /// glob, one NIfTI file).
    #[arg(long, value_name = "S", required_unless_present = "manifest")]
    pub scores: Option<PathBuf>,
    /// Per-subject files listed in a CSV with columns id,scores[,spacing] (instead of --scores).
    #[arg(long, value_name = "FILE.csv", conflicts_with = "scores")]
    pub manifest: Option<PathBuf>,
    /// Suffix of score file names removed to get the subject ID (names the outputs).
    #[arg(long, value_name = "SUFFIX", default_value = "", allow_hyphen_values = true)]
    pub scores_suffix: String,
    /// The transform: identity, sigmoid, distance[:metric], gaussian:FWHM, box-inner, box-outer,
    /// morphological[:footprint=F], ...
    #[arg(long, value_name = "NAME")]
    pub transform: String,
    #[command(flatten)]
    pub options: TransformOptions,
    /// Output element type (default: float32 when the scores are computed in
    /// float32, i.e. float16/float32/small integers, else float64).
    #[arg(long, value_enum)]
    pub dtype: Option<OutDtype>,
    /// Write the transformed stack here (atomically).
    #[arg(short, long, value_name = "OUT.npy", required_unless_present = "out_dir")]
    pub output: Option<PathBuf>,
    /// For per-subject scores: write one file per subject here, ID.nii.gz (with the subject's header
    /// and affine) or ID.npy.
    #[arg(long, value_name = "DIR", conflicts_with = "output")]
    pub out_dir: Option<PathBuf>,
}

/// Run `transform`.
pub fn run(args: Args) -> Result<()> {
    let t = args.options.apply(args.transform.parse::<ScoreTransform>()?)?;
    let files = ScoreFiles {
        scores: args.scores.clone(),
        subjects: SubjectArgs {
            manifest: args.manifest.clone(),
            scores_suffix: args.scores_suffix.clone(),
            masks_suffix: String::new(),
        },
        ..ScoreFiles::default()
    };
    let (source, _) = files.open(None, args.options.class_axis)?;
    let subjects = source.cohort().is_some();
    if subjects != args.out_dir.is_some() {
        usage!("per-subject scores are written with --out-dir DIR, a stack with -o OUT.npy");
    }
    let ndim = source.ndim()?;
    let spacing = args.options.spacing.spacing.clone().unwrap_or_default();
    spacing.for_ndim(ndim).context("--spacing")?;
    let spacings = args.options.spacing.source().per_image(source.n_images(), ndim)?;
    let precision = source.precision()?;
    let dtype = args.dtype.unwrap_or(if precision == Precision::F32 { OutDtype::F32 } else { OutDtype::F64 });
    let out = Out { args: &args, t: &t, source: &source, spacing: &spacing, spacings };
    match (precision, dtype) {
        (Precision::F32, OutDtype::F32) => out.write::<f32, f32>(),
        (Precision::F32, OutDtype::F64) => out.write::<f32, f64>(),
        (Precision::F64, OutDtype::F64) => out.write::<f64, f64>(),
        (Precision::F64, OutDtype::F32) => {
            usage!("{} holds values that need float64; --dtype f32 would round them", source.describe())
        }
    }?;
    let dest =
        args.output.as_ref().or(args.out_dir.as_ref()).map_or_else(String::new, |p| p.display().to_string());
    let shape = source.stack_shape().map_or_else(String::new, |s| format!(" of {s:?}"));
    outln!(
        "wrote {dest} ({} images{shape}, {}) = {t} of {}",
        source.n_images(),
        if dtype == OutDtype::F32 { "float32" } else { "float64" },
        source.describe()
    );
    Ok(())
}

/// One run of `transform`.
struct Out<'a> {
    args: &'a Args,
    t: &'a ScoreTransform,
    source: &'a ScoreSource,
    spacing: &'a Spacing,
    spacings: Option<Vec<Spacing>>,
}

impl Out<'_> {
    /// Transform in `A` (images read by the worker threads), write in `B`
    /// (`B` at least as wide).
    fn write<A: ReadFloat, B: Float + WriteElement>(self) -> Result<()> {
        let source = self.source;
        let n = source.n_images();
        let mut stack = match (&self.args.output, source.stack_shape()) {
            (Some(p), Some(shape)) => Some(NpyWriter::create::<B>(p, n, &shape)?),
            _ => None,
        };
        if let (Some(dir), Some(cohort)) = (&self.args.out_dir, source.cohort()) {
            cohort.check_output_folder(dir)?;
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        let all: Vec<usize> = (0..n).collect();
        let bar = report::progress("transforming", n, source.voxels_per_image());
        let reader = Arc::new(Reader {
            spacings: self.spacings.clone().map(Arc::from),
            cohort_spacing: self.args.options.spacing.spacing.is_some(),
            tick: Some(report::tick(&bar)),
            ..Reader::new(source.clone())
        });
        let t = self.t;
        let spacing = self.spacing;
        // per-subject outputs are published at the end, all of them or none
        let mut run = Publication::new();
        stream(
            reader.items(&all, |r, i| r.image::<A>(i)),
            default_in_flight(),
            |i, item| {
                let scan = item.load()?;
                let sp = scan.spacing().unwrap_or(spacing);
                let out = apply_checked(t, scan.scores(), sp).map_err(|e| e.in_image(i))?;
                Ok(out.mapv(|x| B::from_f64_lossy(x.to_f64_lossless())))
            },
            |i, img| match (&mut stack, source.cohort(), &self.args.out_dir) {
                (Some(w), _, _) => w.push(&img),
                (None, Some(cohort), Some(dir)) => {
                    run.stage(cohort.scores_output(i, &cohort.output_path(i, dir, "")?, &img)?)
                }
                _ => Ok(()),
            },
        )
        .map_err(|e| reader.blame(e, &all))?;
        bar.finish_and_clear();
        if let Some(w) = stack {
            w.finish()?;
        }
        run.publish()?;
        Ok(())
    }
}
