//! Input files and options shared by subcommands, and the loading and
//! calibration code behind them.
//!
//! * [`ScoreFiles`]: `--scores S.npy` or `--inner-scores A.npy --outer-scores B.npy`;
//!   [`Scores::load`] reads them (validated, exact `f64`).
//! * [`TransformOptions`]: `--mask-threshold`, `--spacing`, `--class-axis`.
//! * [`Selection`]: `--exclude IDX.npy`, `--indices IDX.npy`.
//! * [`CalibrationInputs`]: all of the above plus `--masks` and
//!   `--inner`/`--outer`, flattened into `calibrate`;
//!   [`CalibrationInputs::load`] returns a [`Loaded`] whose
//!   [`Loaded::statistics`] computes `(tau_i, gamma_i)` of the selected
//!   images (in parallel, with a progress bar on a terminal) and
//!   [`Loaded::fit`] the calibration file for a [`confseg::Mode`].
//!
//! Image indices in every error are positions in the input files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use confseg::{
    region_statistics, Calibration, Calibrator, Error, ImageStatistics, Max, Mode, ScoreTransform, Spacing,
    TwoClassSoftmax,
};
use ndarray::{ArrayD, Axis, CowArray, IxDyn, Slice};
use rayon::prelude::*;

use crate::cli::calibration_file::{CalibrationFile, InputKind, Sets, Source};
use crate::cli::report::{self, usage};

/// Score files: raw scores, or already transformed inner and outer scores.
#[derive(Debug, Clone, clap::Args)]
pub struct ScoreFiles {
    /// Score stack (N, spatial...) of any numeric dtype, e.g. logits.
    #[arg(
        long,
        value_name = "S.npy",
        required_unless_present = "inner_scores",
        conflicts_with_all = ["inner_scores", "outer_scores"]
    )]
    pub scores: Option<PathBuf>,
    /// Already transformed inner scores f_I(s) (N, spatial...), used as they are.
    #[arg(long, value_name = "A.npy", requires = "outer_scores")]
    pub inner_scores: Option<PathBuf>,
    /// Already transformed outer scores f_O(s) (N, spatial...), used as they are.
    #[arg(long, value_name = "B.npy", requires = "inner_scores")]
    pub outer_scores: Option<PathBuf>,
}

fn parse_spacing(s: &str) -> Result<Spacing, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>().map_err(|_| format!("{x:?} is not a number in {s:?}")))
        .collect::<Result<_, _>>()?;
    Spacing::new(v).map_err(|e| e.to_string())
}

/// Options of the score transforms.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransformOptions {
    /// Predicted mask = scores > T, for mask-based transforms (distance, box); default 0.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub mask_threshold: Option<f64>,
    /// Physical voxel size per image axis, e.g. 1,1,2.5 (default: 1 on every axis).
    #[arg(long, value_name = "S1,S2,...", value_parser = parse_spacing)]
    pub spacing: Option<Spacing>,
    /// Axis of the score stack (0 = images; negative counts from the end) holding
    /// two-class logits, reduced by a softmax to the foreground probability.
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub class_axis: Option<i64>,
}

impl TransformOptions {
    /// Whether no option was given.
    pub fn is_empty(&self) -> bool {
        self.mask_threshold.is_none() && self.spacing.is_none() && self.class_axis.is_none()
    }

    /// The class axis as a non-negative axis of a stack with `ndim` axes.
    ///
    /// # Errors
    /// Axis 0 (the images) or an axis outside the stack.
    pub fn class_axis(&self, ndim: usize, path: &Path) -> Result<Option<usize>> {
        let Some(k) = self.class_axis else { return Ok(None) };
        let resolved = if k < 0 { i64::try_from(ndim).ok().map(|n| n + k) } else { Some(k) };
        match resolved.and_then(|k| usize::try_from(k).ok()) {
            Some(k) if k >= 1 && k < ndim => Ok(Some(k)),
            Some(0) => {
                usage!("--class-axis {k} is the image axis of the batch-first stack {}", path.display())
            }
            _ => usage!("--class-axis {k} is outside the {ndim} axes of {}", path.display()),
        }
    }

    /// `t` with the mask threshold applied (if given).
    ///
    /// # Errors
    /// A threshold that is not finite.
    pub fn apply(&self, t: ScoreTransform) -> Result<ScoreTransform> {
        Ok(match self.mask_threshold {
            Some(x) => t.with_mask_threshold(x).context("--mask-threshold")?,
            None => t,
        })
    }

    /// The voxel spacing (unit if not given).
    pub fn spacing(&self) -> Spacing {
        self.spacing.clone().unwrap_or_default()
    }
}

/// Which side a transform is for (a bare `box` means `box-inner` or `box-outer`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// `f_I`.
    Inner,
    /// `f_O`.
    Outer,
}

/// Parse a transform name (`identity`, `sigmoid`, `distance:chessboard`,
/// ...). For a side, a bare `box[:...]` maps to `box-inner[:...]` /
/// `box-outer[:...]`.
///
/// # Errors
/// An unknown name or bad parameters (the library's message).
pub fn parse_transform(name: &str, side: Option<Side>) -> Result<ScoreTransform> {
    let (head, rest) = name.split_once(':').map_or((name, None), |(h, r)| (h, Some(r)));
    let mapped = match (head.trim(), side) {
        ("box", Some(Side::Inner)) => {
            format!("box-inner{}", rest.map(|r| format!(":{r}")).unwrap_or_default())
        }
        ("box", Some(Side::Outer)) => {
            format!("box-outer{}", rest.map(|r| format!(":{r}")).unwrap_or_default())
        }
        ("box", None) => anyhow::bail!("transform {name:?}: say box-inner or box-outer"),
        _ => name.to_owned(),
    };
    mapped
        .parse::<ScoreTransform>()
        .or_else(|e| if mapped == name { Err(e) } else { name.parse::<ScoreTransform>() })
        .with_context(|| format!("transform {name:?}"))
}

/// Image selection by index files (0-based, 1-D integer `.npy`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Leave out these images (e.g. a learning set).
    #[arg(long, value_name = "IDX.npy")]
    pub exclude: Option<PathBuf>,
    /// Use only these images, in this order.
    #[arg(long, value_name = "IDX.npy")]
    pub indices: Option<PathBuf>,
}

impl Selection {
    /// The selected image indices of a stack of `n` images: `--indices` (or
    /// all images) minus `--exclude`, in order.
    ///
    /// # Errors
    /// Invalid index files (out of range, duplicates, not integers, ...).
    pub fn resolve(&self, n: usize) -> Result<Vec<usize>> {
        let base = match &self.indices {
            Some(p) => confseg::io::read_indices(p, n)?,
            None => (0..n).collect(),
        };
        let Some(p) = &self.exclude else { return Ok(base) };
        let mut excluded = vec![false; n];
        for i in confseg::io::read_indices(p, n)? {
            excluded[i] = true;
        }
        Ok(base.into_iter().filter(|&i| !excluded[i]).collect())
    }
}

/// The masks file.
#[derive(Debug, Clone, clap::Args)]
pub struct MaskFile {
    /// Ground-truth masks (N, spatial...): bool, or integers/floats holding 0/1.
    #[arg(long, value_name = "M.npy")]
    pub masks: PathBuf,
}

impl MaskFile {
    /// Read and validate the masks.
    ///
    /// # Errors
    /// As [`confseg::io::read_masks`].
    pub fn load(&self) -> Result<ArrayD<bool>> {
        Ok(confseg::io::read_masks(&self.masks)?)
    }
}

/// Score stacks read from files (validated: no NaN; exact `f64`).
#[derive(Debug, Clone)]
pub enum Scores {
    /// Raw scores (two-class logits already reduced if a class axis was given).
    Raw {
        /// The file.
        path: PathBuf,
        /// The stack `(N, spatial...)`.
        scores: ArrayD<f64>,
    },
    /// Already transformed scores.
    Transformed {
        /// The inner scores file.
        inner_path: PathBuf,
        /// `f_I(s)`, `(N, spatial...)`.
        inner: ArrayD<f64>,
        /// The outer scores file.
        outer_path: PathBuf,
        /// `f_O(s)`, same shape.
        outer: ArrayD<f64>,
    },
}

/// A stack's images at `images` (positions in the file): a view when they
/// are consecutive, else a copy.
fn take<'a, A: Clone>(a: &'a ArrayD<A>, images: &[usize]) -> CowArray<'a, A, IxDyn> {
    let consecutive = images.windows(2).all(|w| w[1] == w[0] + 1);
    match images.first() {
        Some(&first) if consecutive => {
            CowArray::from(a.slice_axis(Axis(0), Slice::from(first..first + images.len())))
        }
        _ => CowArray::from(a.select(Axis(0), images)),
    }
}

/// Re-tag an error about image `i` of a sub-stack with the file position `images[i]`.
fn remap_image(e: Error, images: &[usize]) -> Error {
    let local = match &e {
        Error::NanScore { image, .. }
        | Error::NonBinaryMask { image, .. }
        | Error::ShapeMismatch { image, .. } => *image,
        _ => None,
    };
    match local.and_then(|i| images.get(i)) {
        Some(&i) => e.in_image(i),
        None => e,
    }
}

/// Run `chunk` over `images` in pieces, merging the results, with a progress bar.
fn chunked<F>(images: &[usize], voxels_per_image: usize, mut chunk: F) -> Result<Calibration>
where
    F: FnMut(&[usize]) -> Result<Calibration>,
{
    let bar = report::progress("calibrating", images.len(), voxels_per_image);
    let size = if bar.is_hidden() { images.len().max(1) } else { (images.len() / 100).max(16) };
    let mut cal = Calibration::new();
    for c in images.chunks(size) {
        cal.merge(&chunk(c)?);
        bar.inc(c.len() as u64);
    }
    bar.finish_and_clear();
    Ok(cal)
}

fn shape_error(
    a: &str,
    a_path: &Path,
    a_shape: &[usize],
    b: &str,
    b_path: &Path,
    b_shape: &[usize],
) -> anyhow::Error {
    anyhow::anyhow!(
        "shape mismatch: {a} {} have shape {a_shape:?}, {b} {} have shape {b_shape:?}",
        a_path.display(),
        b_path.display()
    )
}

impl Scores {
    /// Read the score files; with `class_axis`, reduce raw two-class logits
    /// along that axis of the stack.
    ///
    /// # Errors
    /// Unreadable or invalid files, NaN scores, mismatched inner/outer
    /// shapes, a class axis that does not have length 2.
    pub fn load(files: &ScoreFiles, class_axis: Option<usize>) -> Result<Scores> {
        match (&files.scores, &files.inner_scores, &files.outer_scores) {
            (Some(path), _, _) => {
                let raw = confseg::io::read_scores(path)?;
                let scores = match class_axis {
                    Some(k) => TwoClassSoftmax::new(Axis(k))
                        .apply(&raw)
                        .with_context(|| format!("{}: --class-axis {k}", path.display()))?,
                    None => raw,
                };
                Ok(Scores::Raw { path: path.clone(), scores })
            }
            (None, Some(ip), Some(op)) => {
                let inner = confseg::io::read_scores(ip)?;
                let outer = confseg::io::read_scores(op)?;
                if inner.shape() != outer.shape() {
                    return Err(shape_error(
                        "inner scores",
                        ip,
                        inner.shape(),
                        "outer scores",
                        op,
                        outer.shape(),
                    ));
                }
                Ok(Scores::Transformed { inner_path: ip.clone(), inner, outer_path: op.clone(), outer })
            }
            _ => usage!("give --scores, or both --inner-scores and --outer-scores"),
        }
    }

    /// Shape of the stack `(N, spatial...)`.
    pub fn shape(&self) -> &[usize] {
        match self {
            Scores::Raw { scores, .. } => scores.shape(),
            Scores::Transformed { inner, .. } => inner.shape(),
        }
    }

    /// Number of images.
    pub fn n_images(&self) -> usize {
        self.shape()[0]
    }

    /// Voxels per image.
    pub fn voxels_per_image(&self) -> usize {
        self.shape()[1..].iter().product()
    }

    /// Which kind of input this is.
    pub fn kind(&self) -> InputKind {
        match self {
            Scores::Raw { .. } => InputKind::Scores,
            Scores::Transformed { .. } => InputKind::Transformed,
        }
    }

    fn path(&self) -> &Path {
        match self {
            Scores::Raw { path, .. } => path,
            Scores::Transformed { inner_path, .. } => inner_path,
        }
    }

    /// Check that `masks` has the shape of the scores.
    ///
    /// # Errors
    /// A shape mismatch naming both files and both shapes.
    pub fn check_masks(&self, masks: &ArrayD<bool>, masks_path: &Path) -> Result<()> {
        if masks.shape() != self.shape() {
            let what = match self {
                Scores::Raw { .. } => "scores",
                Scores::Transformed { .. } => "inner/outer scores",
            };
            return Err(shape_error("masks", masks_path, masks.shape(), what, self.path(), self.shape()));
        }
        Ok(())
    }

    /// `(tau_i, gamma_i)` of the images at `images` (file positions), in
    /// that order: raw scores through `calibrator` (transforms, then the
    /// fused kernel; `Calibrator::calibrate_stack`), transformed scores
    /// straight through the fused kernel (`region_statistics`). Parallel.
    ///
    /// # Errors
    /// A transform error or a NaN produced by a transform, naming the
    /// image by its file position.
    pub fn statistics(
        &self,
        calibrator: &Calibrator<ScoreTransform, ScoreTransform>,
        masks: &ArrayD<bool>,
        images: &[usize],
    ) -> Result<Calibration> {
        let voxels = self.voxels_per_image();
        match self {
            Scores::Raw { path, scores } => chunked(images, voxels, |c| {
                calibrator
                    .calibrate_stack(&take(scores, c), &take(masks, c))
                    .map_err(|e| remap_image(e, c))
                    .with_context(|| format!("{}", path.display()))
            }),
            Scores::Transformed { inner_path, inner, outer_path, outer } => chunked(images, voxels, |c| {
                let stats = c
                    .par_iter()
                    .map(|&i| {
                        region_statistics(
                            &inner.index_axis(Axis(0), i),
                            &outer.index_axis(Axis(0), i),
                            &masks.index_axis(Axis(0), i),
                            &Max,
                        )
                        .map_err(|e| e.in_image(i))
                    })
                    .collect::<Result<Vec<ImageStatistics>, Error>>()
                    .with_context(|| format!("{}, {}", inner_path.display(), outer_path.display()))?;
                Ok(stats.into_iter().collect())
            }),
        }
    }

    /// Inner and outer sets of every image (same shape as the stack).
    ///
    /// # Errors
    /// A transform error, naming the image.
    pub fn predict(&self, sets: &Sets) -> Result<confseg::Sets<IxDyn>> {
        match self {
            Scores::Raw { path, scores } => {
                sets.predict_stack(scores).with_context(|| format!("{}", path.display()))
            }
            Scores::Transformed { inner_path, inner, outer_path, outer } => sets
                .predict_transformed(inner, outer)
                .with_context(|| format!("{}, {}", inner_path.display(), outer_path.display())),
        }
    }
}

/// Everything `calibrate` reads; flatten into any subcommand that
/// calibrates on labelled files.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrationInputs {
    #[command(flatten)]
    pub masks: MaskFile,
    #[command(flatten)]
    pub files: ScoreFiles,
    /// Inner transform f_I for --scores: identity, sigmoid, distance[:metric], gaussian:FWHM, box, ...
    #[arg(long, value_name = "NAME")]
    pub inner: Option<String>,
    /// Outer transform f_O for --scores (same names as --inner).
    #[arg(long, value_name = "NAME")]
    pub outer: Option<String>,
    #[command(flatten)]
    pub options: TransformOptions,
    #[command(flatten)]
    pub selection: Selection,
}

/// Validated, loaded calibration inputs.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The masks `(N, spatial...)`.
    pub masks: ArrayD<bool>,
    /// The scores, same shape.
    pub scores: Scores,
    /// Transforms and spacing (identity for transformed inputs).
    pub calibrator: Calibrator<ScoreTransform, ScoreTransform>,
    /// The class axis of the raw score file, if any.
    pub class_axis: Option<usize>,
    /// Selected images (file positions), in order.
    pub images: Vec<usize>,
    /// Provenance for the calibration file.
    pub source: Source,
}

impl CalibrationInputs {
    /// Read and cross-check everything: masks, scores (class axis reduced),
    /// shapes, transforms and spacing for the image dimension, selection.
    ///
    /// # Errors
    /// Usage errors (transform options with pre-transformed scores), file
    /// errors, shape mismatches, invalid transforms or spacing.
    pub fn load(&self) -> Result<Loaded> {
        let transformed = self.files.scores.is_none();
        if transformed && (self.inner.is_some() || self.outer.is_some() || !self.options.is_empty()) {
            usage!(
                "--inner, --outer, --mask-threshold, --spacing and --class-axis apply to --scores; \
                 --inner-scores/--outer-scores are used as they are"
            );
        }
        let (inner, outer) = if transformed {
            (ScoreTransform::Identity, ScoreTransform::Identity)
        } else {
            let parse = |name: &Option<String>, side| match name {
                Some(n) => self.options.apply(parse_transform(n, Some(side))?),
                None => self.options.apply(ScoreTransform::Identity),
            };
            (parse(&self.inner, Side::Inner)?, parse(&self.outer, Side::Outer)?)
        };
        let masks = self.masks.load()?;
        let class_axis = match &self.files.scores {
            Some(p) => self.options.class_axis(confseg::io::inspect(p)?.shape.len(), p)?,
            None => None,
        };
        let scores = Scores::load(&self.files, class_axis)?;
        scores.check_masks(&masks, &self.masks.masks)?;
        let spacing = self.options.spacing();
        spacing.for_ndim(scores.shape().len() - 1).context("--spacing")?;
        let calibrator = Calibrator::new(inner, outer).with_spacing(spacing);
        let images = self.selection.resolve(scores.n_images())?;
        let source = Source {
            masks: Some(self.masks.masks.clone()),
            scores: self.files.scores.clone(),
            inner_scores: self.files.inner_scores.clone(),
            outer_scores: self.files.outer_scores.clone(),
            exclude: self.selection.exclude.clone(),
            indices: self.selection.indices.clone(),
            images_in_files: Some(scores.n_images()),
        };
        Ok(Loaded { masks, scores, calibrator, class_axis, images, source })
    }
}

impl Loaded {
    /// `(tau_i, gamma_i)` of the selected images.
    ///
    /// # Errors
    /// As [`Scores::statistics`].
    pub fn statistics(&self) -> Result<Calibration> {
        self.scores.statistics(&self.calibrator, &self.masks, &self.images)
    }

    /// The calibration file for `mode` from statistics `calibration`.
    ///
    /// # Errors
    /// No calibration data (an empty selection).
    pub fn fit(&self, calibration: &Calibration, mode: Mode) -> Result<CalibrationFile> {
        if calibration.is_empty() {
            let total = self.scores.n_images();
            if total == 0 {
                anyhow::bail!("{}: the stack holds no images", self.scores.path().display());
            }
            anyhow::bail!("no calibration images: --indices/--exclude leave none of the {total} images");
        }
        let sets = self.calibrator.fit(calibration, mode)?;
        Ok(CalibrationFile {
            sets,
            input: self.scores.kind(),
            class_axis: self.class_axis,
            source: self.source.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_box_maps_to_the_side() {
        let inner = parse_transform("box", Some(Side::Inner)).unwrap();
        assert_eq!(inner, "box-inner".parse::<ScoreTransform>().unwrap());
        let outer = parse_transform("box:connectivity=full", Some(Side::Outer)).unwrap();
        assert_eq!(outer, "box-outer:connectivity=full".parse::<ScoreTransform>().unwrap());
        let e = parse_transform("box", None).unwrap_err();
        assert!(e.to_string().contains("box-inner or box-outer"), "{e}");
        assert_eq!(parse_transform("sigmoid", Some(Side::Inner)).unwrap(), ScoreTransform::Sigmoid);
        let e = parse_transform("nope", Some(Side::Outer)).unwrap_err();
        assert!(format!("{e:#}").contains("nope"));
    }

    #[test]
    fn spacing_and_selection() {
        assert_eq!(parse_spacing("1, 1,2.5").unwrap(), Spacing::new(vec![1.0, 1.0, 2.5]).unwrap());
        assert!(parse_spacing("1,0").is_err());
        assert!(parse_spacing("1,x").is_err());
        assert_eq!(Selection::default().resolve(3).unwrap(), vec![0, 1, 2]);
        let images = [4, 5, 6];
        let e = remap_image(Error::NanScore { what: "scores", image: Some(1), index: vec![0] }, &images);
        assert_eq!(e, Error::NanScore { what: "scores", image: Some(5), index: vec![0] });
    }
}
