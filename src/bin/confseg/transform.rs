//! `confseg transform`: write a transformed score stack.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ValueEnum;
use confseg::io::Dtype;
use confseg::{Error, Transform};
use ndarray::{ArrayD, Axis};
use rayon::prelude::*;

use crate::cli::inputs::{parse_transform, ScoreFiles, Scores, TransformOptions};

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
    /// Output element type (default: float32 for float16/float32 input, else float64).
    #[arg(long, value_enum)]
    pub dtype: Option<OutDtype>,
    /// Write the transformed stack here (atomically).
    #[arg(short, long, value_name = "OUT.npy")]
    pub output: PathBuf,
}

/// Run `transform`.
pub fn run(args: Args) -> Result<()> {
    let t = args.options.apply(parse_transform(&args.transform, None)?)?;
    let info = confseg::io::inspect(&args.scores)?;
    let class_axis = args.options.class_axis(info.shape.len(), &args.scores)?;
    let files = ScoreFiles { scores: Some(args.scores.clone()), inner_scores: None, outer_scores: None };
    let Scores::Raw { scores, .. } = Scores::load(&files, class_axis)? else {
        anyhow::bail!("internal error: raw scores were requested");
    };
    let spacing = args.options.spacing();
    spacing.for_ndim(scores.ndim() - 1).context("--spacing")?;
    let images = (0..scores.len_of(Axis(0)))
        .into_par_iter()
        .map(|i| {
            t.apply(&scores.index_axis(Axis(0), i), &spacing)
                .map(|c| c.into_owned())
                .map_err(|e| e.in_image(i))
        })
        .collect::<Result<Vec<_>, Error>>()
        .with_context(|| format!("{}: transform {t}", args.scores.display()))?;
    let mut out = ArrayD::<f64>::zeros(scores.raw_dim());
    for (i, img) in images.into_iter().enumerate() {
        out.index_axis_mut(Axis(0), i).assign(&img);
    }
    let dtype = args.dtype.unwrap_or(if matches!(info.dtype, Dtype::F16 | Dtype::F32) {
        OutDtype::F32
    } else {
        OutDtype::F64
    });
    match dtype {
        OutDtype::F32 => confseg::io::write_array(&args.output, &out.mapv(|x| x as f32))?,
        OutDtype::F64 => confseg::io::write_array(&args.output, &out)?,
    }
    println!(
        "wrote {} ({:?}, {}) = {t} of {}",
        args.output.display(),
        out.shape(),
        if dtype == OutDtype::F32 { "float32" } else { "float64" },
        args.scores.display()
    );
    Ok(())
}
