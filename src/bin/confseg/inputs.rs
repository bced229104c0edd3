//! Input files and options shared by subcommands, opened for streaming.
//!
//! * [`ScoreFiles`]: `--scores S.npy` or `--inner-scores A.npy --outer-scores B.npy`;
//!   [`ScoreSource::open`] reads their headers (a file named twice is
//!   opened once and its images are read once).
//! * [`TransformOptions`]: `--mask-threshold`, `--spacing`, `--spacing-file`, `--class-axis`.
//! * [`MaskArgs`]: `--masks M.npy` and `--label`/`--labels` for label maps.
//! * [`Selection`]: `--exclude IDX.npy`, `--indices IDX.npy`.
//! * [`CalibrationInputs`]: all of the above plus `--inner`/`--outer`,
//!   flattened into `calibrate`, `validate`; [`CalibrationInputs::open`]
//!   returns an [`Opened`] input whose images stream through the library
//!   (`Calibrator::calibrate_stream`, `Pool::from_stream`) in their native
//!   precision (`f32` for float32 files).
//!
//! Image indices in every error are positions in the input files.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use std::sync::Arc;

use confseg::io::cohort::{is_per_subject, Cohort, Pairing};
use confseg::io::{Labels, NpyStack, Precision, ReadFloat};
use confseg::mask::Structure;
use confseg::pipeline::Lazy;
use confseg::{
    AsImage, Calibration, Calibrator, Error, Geometry, Image, ImageStatistics, RiskCalibration,
    ScoreTransform, Side, Spacing, Transformed, TwoClassSoftmax,
};
use ndarray::{ArrayD, ArrayRef, Axis, IxDyn};

use crate::cli::calibration_file::InputKind;
use crate::cli::report::{self, usage};

/// Score files: raw scores, or already transformed inner and outer scores.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ScoreFiles {
    /// Scores: a stack (N, spatial...) .npy of any numeric dtype, or per-subject files (.nii, .nii.gz,
    /// single-image .npy) given as a folder, a quoted glob ('data/*_prob.nii.gz') or one NIfTI file.
    #[arg(long, value_name = "S", conflicts_with_all = ["inner_scores", "outer_scores"])]
    pub scores: Option<PathBuf>,
    /// Already transformed inner scores f_I(s) (N, spatial...), used as they are.
    #[arg(long, value_name = "A.npy", requires = "outer_scores")]
    pub inner_scores: Option<PathBuf>,
    /// Already transformed outer scores f_O(s) (N, spatial...), used as they are.
    #[arg(long, value_name = "B.npy", requires = "inner_scores")]
    pub outer_scores: Option<PathBuf>,
    #[command(flatten)]
    pub subjects: SubjectArgs,
}

/// How per-subject files are found and paired.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SubjectArgs {
    /// Per-subject files listed in a CSV with columns id,scores,mask[,spacing] (paths relative to it);
    /// instead of --scores/--masks.
    #[arg(long, value_name = "FILE.csv")]
    pub manifest: Option<PathBuf>,
    /// Suffix of score file names removed to get the subject ID (e.g. _prob for sub-01_prob.nii.gz).
    #[arg(long, value_name = "SUFFIX", default_value = "", allow_hyphen_values = true)]
    pub scores_suffix: String,
    /// Suffix of mask file names removed to get the subject ID (e.g. _seg).
    #[arg(long, value_name = "SUFFIX", default_value = "", allow_hyphen_values = true)]
    pub masks_suffix: String,
}

pub fn parse_spacing(s: &str) -> Result<Spacing, String> {
    let v: Vec<f64> = s
        .split(',')
        .map(|x| x.trim().parse::<f64>().map_err(|_| format!("{x:?} is not a number in {s:?}")))
        .collect::<Result<_, _>>()?;
    Spacing::new(v).map_err(|e| e.to_string())
}

/// Voxel spacing: one for every image, or one per image.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SpacingArgs {
    /// Physical voxel size per image axis, e.g. 1,1,2.5, for every image (default: 1 on every axis).
    #[arg(long, value_name = "S1,S2,...", value_parser = parse_spacing, conflicts_with = "spacing_file")]
    pub spacing: Option<Spacing>,
    /// Spacing per image: an (N, ndim) .npy array, row i for image i of the score file.
    #[arg(long, value_name = "SP.npy")]
    pub spacing_file: Option<PathBuf>,
}

impl SpacingArgs {
    /// The cohort spacing (unit if not given).
    pub fn spacing(&self) -> Spacing {
        self.spacing.clone().unwrap_or_default()
    }

    /// Per-image spacings from `--spacing-file`, one per image of a file of
    /// `n_images` images of dimension `ndim`.
    ///
    /// # Errors
    /// The file cannot be read, does not have shape `(n_images, ndim)`, or
    /// holds a value that is not a positive finite spacing.
    pub fn spacings(&self, n_images: usize, ndim: usize) -> Result<Option<Vec<Spacing>>> {
        let Some(path) = &self.spacing_file else { return Ok(None) };
        let a = confseg::io::read_array(path, n_images.saturating_mul(ndim).max(1))?;
        if a.shape() != [n_images, ndim] {
            anyhow::bail!(
                "{}: spacing file of shape {:?}; expected ({n_images}, {ndim}): one row of {ndim} values per image",
                path.display(),
                a.shape()
            );
        }
        a.outer_iter()
            .enumerate()
            .map(|(i, row)| {
                Spacing::new(row.iter().copied().collect())
                    .with_context(|| format!("{}: row {i}", path.display()))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// Options of the score transforms.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransformOptions {
    /// Predicted mask = scores > T, for mask-based transforms (distance, box); default 0.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub mask_threshold: Option<f64>,
    #[command(flatten)]
    pub spacing: SpacingArgs,
    /// Axis of the score stack (0 = images; negative counts from the end) holding
    /// two-class logits, reduced by a softmax to the foreground probability.
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub class_axis: Option<i64>,
}

impl TransformOptions {
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
}

/// Which images of the input files are used.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Use all images except these (a 1-D integer .npy of 0-based indices, e.g. a learning set).
    #[arg(long, value_name = "IDX.npy")]
    pub exclude: Option<PathBuf>,
    /// Use only these images, in this order (a 1-D integer .npy of 0-based indices).
    #[arg(long, value_name = "IDX.npy")]
    pub indices: Option<PathBuf>,
}

impl Selection {
    /// The selected file positions among `n` images, in order.
    ///
    /// # Errors
    /// Invalid index files (out of range, duplicates, ...).
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

fn parse_labels(s: &str) -> Result<Labels, String> {
    let v: Vec<i64> = s
        .split(',')
        .map(|x| x.trim().parse::<i64>().map_err(|_| format!("{x:?} is not an integer label in {s:?}")))
        .collect::<Result<_, _>>()?;
    Labels::select(v).map_err(|e| e.to_string())
}

/// The masks file and which of its labels are the object.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct MaskArgs {
    /// Ground-truth masks: a stack (N, spatial...) .npy, or per-subject files (folder, quoted glob) paired
    /// with the scores by ID; bool, or integers/floats holding 0/1 (or labels, with --label/--labels).
    #[arg(long, value_name = "M")]
    pub masks: Option<PathBuf>,
    /// The structure is this label of an integer label map (other labels are background).
    #[arg(long, value_name = "K", allow_hyphen_values = true, conflicts_with = "labels", value_parser = parse_labels)]
    pub label: Option<Labels>,
    /// The structure is the union of these labels, e.g. 1,2,4 (BraTS whole tumour).
    #[arg(long, value_name = "K1,K2,...", value_parser = parse_labels)]
    pub labels: Option<Labels>,
}

impl MaskArgs {
    /// The label selection (binary 0/1 masks unless --label/--labels).
    pub fn selection(&self) -> Labels {
        self.label.clone().or_else(|| self.labels.clone()).unwrap_or_default()
    }
}

/// Opened score files.
#[derive(Debug, Clone)]
pub enum ScoreSource {
    /// Raw scores, with the class axis (of the stack) to reduce, if any.
    Raw {
        /// The stack.
        stack: NpyStack,
        /// Axis of the stack holding two-class logits.
        class_axis: Option<usize>,
    },
    /// Already transformed scores.
    Transformed {
        /// `f_I(s)`.
        inner: NpyStack,
        /// `f_O(s)`; `None` when it is the same file as `inner`.
        outer: Option<NpyStack>,
    },
    /// Per-subject files, each with its own shape and geometry.
    Subjects {
        /// The subjects.
        cohort: Arc<Cohort>,
        /// Axis holding two-class logits, counted as in a stack (1 = the
        /// first axis of an image), if any.
        class_axis: Option<usize>,
    },
}

/// Opened mask files.
#[derive(Debug, Clone)]
pub enum MaskSource {
    /// A stack (N, spatial...).
    Stack(NpyStack),
    /// Per-subject files, paired with the scores in the cohort.
    Subjects(Arc<Cohort>),
}

impl MaskSource {
    /// The file of mask `i`, for messages.
    pub fn path(&self, i: usize) -> PathBuf {
        match self {
            MaskSource::Stack(s) => s.path().to_path_buf(),
            MaskSource::Subjects(c) => c.subjects().get(i).and_then(|s| s.mask.clone()).unwrap_or_default(),
        }
    }
}

/// Whether two paths name the same file (same device and inode).
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    a == b
}

/// Resolve a class axis (negative counts from the end) of a stack with `ndim` axes.
fn class_axis_of(class_axis: Option<i64>, ndim: usize, what: &str) -> Result<Option<usize>> {
    let options = TransformOptions { class_axis, ..TransformOptions::default() };
    options.class_axis(ndim, Path::new(what))
}

impl ScoreSource {
    /// Open the score files named by `files` (and, with `masks`, the masks:
    /// a stack, or per-subject files paired with per-subject scores);
    /// headers only.
    ///
    /// # Errors
    /// Unreadable or invalid files; mismatched inner/outer shapes; a bad
    /// class axis; unpaired subjects.
    pub fn open(
        files: &ScoreFiles,
        masks: Option<&Path>,
        class_axis: Option<i64>,
    ) -> Result<(ScoreSource, Option<MaskSource>)> {
        let sub = &files.subjects;
        let pairing = Pairing::new(sub.scores_suffix.clone(), sub.masks_suffix.clone());
        let subjects = |cohort: Cohort| -> Result<(ScoreSource, Option<MaskSource>)> {
            let cohort = Arc::new(cohort);
            let first = cohort.info(0)?;
            let class_axis = class_axis_of(class_axis, first.shape.len() + 1, "the subjects' scores")?;
            let with_masks = cohort.subjects().iter().all(|s| s.mask.is_some());
            let masks = (masks.is_some() || (sub.manifest.is_some() && with_masks))
                .then(|| MaskSource::Subjects(Arc::clone(&cohort)));
            Ok((ScoreSource::Subjects { cohort, class_axis }, masks))
        };
        if let Some(m) = &sub.manifest {
            if files.scores.is_some() || files.inner_scores.is_some() {
                usage!("give --manifest or --scores, not both");
            }
            return subjects(Cohort::from_manifest(m, masks.is_some())?);
        }
        match (&files.scores, &files.inner_scores, &files.outer_scores) {
            (Some(path), _, _) if is_per_subject(&path.to_string_lossy()) => {
                let mask_arg = masks.map(|m| m.to_string_lossy().into_owned());
                if mask_arg.as_deref().is_some_and(|m| !is_per_subject(m) && Path::new(m).is_file()) {
                    usage!(
                        "per-subject scores need per-subject masks (a folder or a quoted glob), not a stack"
                    );
                }
                subjects(Cohort::discover(&path.to_string_lossy(), mask_arg.as_deref(), &pairing)?)
            }
            (Some(path), _, _) => {
                let stack = NpyStack::open(path, "scores")?;
                let class_axis =
                    class_axis_of(class_axis, stack.info().shape.len(), &path.display().to_string())?;
                if let Some(k) = class_axis {
                    let len = stack.info().shape[k];
                    if len != 2 {
                        anyhow::bail!(
                            "{}: --class-axis {k} needs an axis of length 2 (two-class logits); the stack has shape {:?}",
                            path.display(),
                            stack.info().shape
                        );
                    }
                }
                let masks = masks.map(stack_masks).transpose()?;
                Ok((ScoreSource::Raw { stack, class_axis }, masks))
            }
            (None, Some(ip), Some(op)) => {
                let inner = NpyStack::open(ip, "inner scores")?;
                let masks = masks.map(stack_masks).transpose()?;
                if same_file(ip, op) {
                    return Ok((ScoreSource::Transformed { inner, outer: None }, masks));
                }
                let outer = NpyStack::open(op, "outer scores")?;
                if inner.info().shape != outer.info().shape {
                    anyhow::bail!(
                        "shape mismatch: inner scores {} have shape {:?}, outer scores {} have shape {:?}",
                        ip.display(),
                        inner.info().shape,
                        op.display(),
                        outer.info().shape
                    );
                }
                Ok((ScoreSource::Transformed { inner, outer: Some(outer) }, masks))
            }
            _ => usage!("give --scores, --inner-scores and --outer-scores, or --manifest"),
        }
    }

    /// The first score file (the manifest's first subject for subjects).
    pub fn path(&self) -> &Path {
        match self {
            ScoreSource::Raw { stack, .. } => stack.path(),
            ScoreSource::Transformed { inner, .. } => inner.path(),
            ScoreSource::Subjects { cohort, .. } => {
                cohort.subjects().first().map_or(Path::new(""), |s| s.scores.as_path())
            }
        }
    }

    /// The files, for messages: `a.npy`, `a.npy, b.npy` or `N subjects`.
    pub fn describe(&self) -> String {
        match self {
            ScoreSource::Transformed { inner, outer: Some(o) } => {
                format!("{}, {}", inner.path().display(), o.path().display())
            }
            ScoreSource::Subjects { cohort, .. } => format!("{} subjects", cohort.len()),
            _ => self.path().display().to_string(),
        }
    }

    /// The score file of image `i`, for messages.
    pub fn path_of(&self, i: usize) -> String {
        match self {
            ScoreSource::Subjects { cohort, .. } => cohort
                .subjects()
                .get(i)
                .map_or_else(|| format!("subject {i}"), |s| s.scores.display().to_string()),
            _ => self.describe(),
        }
    }

    /// Number of images (subjects).
    pub fn n_images(&self) -> usize {
        match self {
            ScoreSource::Raw { stack, .. } => stack.len(),
            ScoreSource::Transformed { inner, .. } => inner.len(),
            ScoreSource::Subjects { cohort, .. } => cohort.len(),
        }
    }

    /// The shape of one image of a stack, after the class axis is reduced
    /// (`None` for subjects, whose shapes differ).
    pub fn stack_shape(&self) -> Option<Vec<usize>> {
        match self {
            ScoreSource::Raw { stack, class_axis } => {
                let mut s = stack.image_shape().to_vec();
                if let Some(k) = class_axis {
                    s.remove(k - 1);
                }
                Some(s)
            }
            ScoreSource::Transformed { inner, .. } => Some(inner.image_shape().to_vec()),
            ScoreSource::Subjects { .. } => None,
        }
    }

    /// The image dimensionality (after the class axis is reduced).
    ///
    /// # Errors
    /// The first subject's header cannot be read.
    pub fn ndim(&self) -> Result<usize> {
        Ok(match (self.stack_shape(), self) {
            (Some(s), _) => s.len(),
            (None, ScoreSource::Subjects { cohort, class_axis }) => {
                cohort.info(0)?.shape.len() - usize::from(class_axis.is_some())
            }
            (None, _) => 0,
        })
    }

    /// Voxels per image (of the first subject, for progress bars).
    pub fn voxels_per_image(&self) -> usize {
        match (self.stack_shape(), self) {
            (Some(s), _) => s.iter().product(),
            (None, ScoreSource::Subjects { cohort, .. }) => {
                cohort.info(0).map_or(0, |i| i.shape.iter().product())
            }
            (None, _) => 0,
        }
    }

    /// The float type the images are computed in: the widest any file needs.
    ///
    /// # Errors
    /// A subject's header cannot be read.
    pub fn precision(&self) -> Result<Precision> {
        Ok(match self {
            ScoreSource::Raw { stack, .. } => stack.precision(),
            ScoreSource::Transformed { inner, outer } => {
                outer.as_ref().map_or(inner.precision(), |o| inner.precision().max(o.precision()))
            }
            ScoreSource::Subjects { cohort, .. } => {
                let mut p = Precision::F32;
                for i in 0..cohort.len() {
                    p = p.max(cohort.info(i)?.precision);
                }
                p
            }
        })
    }

    /// Which kind of input this is.
    pub fn kind(&self) -> InputKind {
        match self {
            ScoreSource::Raw { .. } | ScoreSource::Subjects { .. } => InputKind::Scores,
            ScoreSource::Transformed { .. } => InputKind::Transformed,
        }
    }

    /// The class axis of raw scores (counted as in a stack).
    pub fn class_axis(&self) -> Option<usize> {
        match self {
            ScoreSource::Raw { class_axis, .. } | ScoreSource::Subjects { class_axis, .. } => *class_axis,
            ScoreSource::Transformed { .. } => None,
        }
    }

    /// Raw score image `i` (file position), class axis reduced (for
    /// transformed inputs: the inner scores), with the geometry of its file
    /// when it has one (NIfTI). Reads take `&self`, so worker threads read
    /// images in parallel.
    ///
    /// # Errors
    /// A read error or a bad class axis, naming the file.
    pub fn read_raw<A: ReadFloat>(&self, i: usize) -> confseg::Result<(ArrayD<A>, Option<Geometry>)> {
        let (a, geometry, path) = match self {
            ScoreSource::Raw { stack, .. } => (stack.read_scores::<A>(i)?, None, stack.path().to_path_buf()),
            ScoreSource::Transformed { inner, .. } => {
                (inner.read_scores::<A>(i)?, None, inner.path().to_path_buf())
            }
            ScoreSource::Subjects { cohort, .. } => {
                let (a, g) = cohort.read_scores::<A>(i)?;
                (a, g, cohort.subjects()[i].scores.clone())
            }
        };
        let a = match self.class_axis() {
            // the softmax removes the class axis (axis k of the stack is axis k - 1 of an image)
            Some(k) => TwoClassSoftmax::new(Axis(k - 1))
                .apply(&a)
                .map_err(|e| Error::InFile { path, error: Box::new(e) })?,
            None => a,
        };
        Ok((a, geometry))
    }

    /// The already transformed scores of image `i`; a file named twice is read once.
    ///
    /// # Errors
    /// A read error, naming the file.
    pub fn read_transformed<A: ReadFloat>(&self, i: usize) -> confseg::Result<Transformed<A, IxDyn>> {
        let (inner, outer) = match self {
            ScoreSource::Transformed { inner, outer } => (inner, outer.as_ref()),
            ScoreSource::Raw { stack, .. } => (stack, None),
            ScoreSource::Subjects { .. } => return Ok(Transformed::Shared(self.read_raw::<A>(i)?.0)),
        };
        let fi = inner.read_scores::<A>(i)?;
        Ok(match outer {
            Some(o) => Transformed::Separate { inner: fi, outer: o.read_scores::<A>(i)? },
            None => Transformed::Shared(fi),
        })
    }
}

/// A masks stack.
fn stack_masks(path: &Path) -> Result<MaskSource> {
    if is_per_subject(&path.to_string_lossy()) {
        usage!("a score stack needs a mask stack (an .npy file), not per-subject masks");
    }
    Ok(MaskSource::Stack(NpyStack::open(path, "masks")?))
}

/// A raw score image with the cohort spacing (a plain array) or its own
/// (from --spacing-file or its NIfTI header).
#[derive(Debug, Clone)]
pub enum Scan<A: ReadFloat> {
    /// The calibrator's or the fitted sets' default spacing applies.
    Plain(ArrayD<A>),
    /// The image's own spacing.
    Own(Image<'static, A, IxDyn>),
}

impl<A: ReadFloat> Scan<A> {
    /// The scores, owned.
    pub fn into_scores(self) -> ArrayD<A> {
        match self {
            Scan::Plain(a) => a,
            Scan::Own(img) => img.into_scores(),
        }
    }
}

impl<A: ReadFloat> AsImage for Scan<A> {
    type Elem = A;
    type Dim = IxDyn;
    fn scores(&self) -> &ArrayRef<A, IxDyn> {
        match self {
            Scan::Plain(a) => a,
            Scan::Own(img) => img.scores(),
        }
    }
    fn spacing(&self) -> Option<&Spacing> {
        match self {
            Scan::Plain(_) => None,
            Scan::Own(img) => AsImage::spacing(img),
        }
    }
}

fn no_masks() -> Error {
    Error::InvalidParameter {
        name: "masks",
        value: "none".into(),
        reason: "this command reads no masks".into(),
    }
}

/// The score files, spacings and masks of a command, shared by the lazy
/// items of a stream (each worker reads its own images).
#[derive(Debug)]
pub struct Reader {
    /// The scores.
    pub scores: ScoreSource,
    /// Spacing per image of the file (--spacing-file), if given per image.
    pub spacings: Option<Vec<Spacing>>,
    /// Whether one --spacing for every image overrides the files' own.
    pub cohort_spacing: bool,
    /// The masks and the labels that are the object, if the command reads masks.
    pub masks: Option<(MaskSource, Labels)>,
    /// Counts images read (hidden unless on a terminal).
    pub bar: indicatif::ProgressBar,
}

impl Reader {
    /// Raw image `i` with its spacing: from --spacing-file, from its file's
    /// header (NIfTI), or the cohort default (--spacing, or none).
    ///
    /// # Errors
    /// As [`ScoreSource::read_raw`]; a spacing that does not fit.
    pub fn scan<A: ReadFloat>(&self, i: usize) -> confseg::Result<Scan<A>> {
        let (s, geometry) = self.scores.read_raw::<A>(i)?;
        Ok(match (&self.spacings, geometry) {
            (Some(sp), _) => Scan::Own(Image::new(s, sp[i].clone())?),
            (None, Some(g)) if !self.cohort_spacing => Scan::Own(Image::with_geometry(s, g)?),
            _ => Scan::Plain(s),
        })
    }

    /// `(tau, gamma)` of image `i` of scores used as they are (transformed
    /// inputs, or raw scores with identity transforms), read chunk by chunk.
    ///
    /// # Errors
    /// As [`confseg::io::transformed_statistics`].
    pub fn transformed_statistics<A: ReadFloat>(&self, i: usize) -> confseg::Result<ImageStatistics> {
        let (inner, outer) = match &self.scores {
            ScoreSource::Transformed { inner, outer } => (inner, outer.as_ref()),
            ScoreSource::Raw { stack, .. } => (stack, None),
            ScoreSource::Subjects { .. } => return Err(no_masks()),
        };
        let Some((MaskSource::Stack(masks), labels)) = &self.masks else { return Err(no_masks()) };
        confseg::io::transformed_statistics::<A>(inner, outer, masks, labels, i)
    }

    /// Label map `i` as its values (for several structures).
    ///
    /// # Errors
    /// A read error, naming the file.
    pub fn label_map(&self, i: usize) -> confseg::Result<ArrayD<f64>> {
        match &self.masks {
            Some((MaskSource::Stack(m), _)) => m.read_scores::<f64>(i),
            Some((MaskSource::Subjects(c), _)) => c.read_label_map(i),
            None => Err(no_masks()),
        }
    }

    /// Mask `i`.
    ///
    /// # Errors
    /// A read error or a value the labels do not accept, naming the file.
    pub fn mask(&self, i: usize) -> confseg::Result<ArrayD<u8>> {
        match &self.masks {
            Some((MaskSource::Stack(m), labels)) => m.read_mask(i, labels),
            Some((MaskSource::Subjects(c), labels)) => c.read_mask(i, labels),
            None => Err(no_masks()),
        }
    }

    /// Lazy items `f(reader, i)` for the images at `images`, each loaded
    /// on the worker thread that processes it.
    pub fn items<'r, T, F>(
        self: &'r Arc<Self>,
        images: &'r [usize],
        f: F,
    ) -> impl Iterator<Item = confseg::Result<Lazy<impl FnOnce() -> confseg::Result<T> + Send + 'r>>> + Send + 'r
    where
        F: Fn(&Reader, usize) -> confseg::Result<T> + Send + Sync + Copy + 'r,
        T: 'r,
    {
        let reader = Arc::clone(self);
        images.iter().copied().map(move |i| {
            let r = Arc::clone(&reader);
            Ok(Lazy(move || {
                let out = f(&r, i);
                r.bar.inc(1);
                out
            }))
        })
    }
}

/// Everything `calibrate` reads; flatten into any subcommand that
/// calibrates on labelled files.
#[derive(Debug, Clone, clap::Args)]
pub struct CalibrationInputs {
    #[command(flatten)]
    pub masks: MaskArgs,
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
    #[command(flatten)]
    pub structures: StructureArgs,
}

fn parse_structure(s: &str) -> Result<Structure, String> {
    s.parse::<Structure>().map_err(|e| e.to_string())
}

/// Several structures of a label map, calibrated together.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StructureArgs {
    /// A structure as NAME=LABELS of the label map (repeatable: --structure WT=1,2,4 --structure TC=1,4
    /// --structure ET=4); its scores come from --class-axis (softmax over classes) or --structure-axis.
    #[arg(long = "structure", value_name = "NAME=LABELS", value_parser = parse_structure)]
    pub structures: Vec<Structure>,
    /// With --structure and --class-axis: the label of each class channel, e.g. 0,1,2,4 (default 0,1,...,C-1).
    #[arg(long, value_name = "L0,L1,...", value_delimiter = ',', allow_hyphen_values = true)]
    pub class_labels: Option<Vec<i64>>,
    /// With --structure: the axis (as --class-axis counts it) holding one score map per structure, in
    /// the order of the --structure options (instead of a softmax over classes).
    #[arg(long, value_name = "K", conflicts_with = "class_labels", allow_hyphen_values = true)]
    pub structure_axis: Option<i64>,
}

/// Opened, cross-checked calibration inputs.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The masks.
    pub masks: MaskSource,
    /// Which labels are the object.
    pub labels: Labels,
    /// The scores.
    pub scores: ScoreSource,
    /// Transforms and cohort spacing (identity for transformed inputs).
    pub calibrator: Calibrator<ScoreTransform, ScoreTransform>,
    /// Per-image spacing (file order), from --spacing-file.
    pub spacings: Option<Vec<Spacing>>,
    /// Whether one --spacing for every image overrides the files' own.
    pub cohort_spacing: bool,
    /// Selected images (file positions), in order.
    pub images: Vec<usize>,
}

impl CalibrationInputs {
    /// Open and cross-check everything: masks, scores, shapes, transforms
    /// and spacing for the image dimension, selection. Reads headers only.
    ///
    /// # Errors
    /// Usage errors (transform options with pre-transformed scores), file
    /// errors, shape mismatches, invalid transforms or spacing.
    pub fn open(&self) -> Result<Opened> {
        let transformed = self.files.inner_scores.is_some();
        if transformed
            && (self.inner.is_some()
                || self.outer.is_some()
                || self.options.mask_threshold.is_some()
                || self.options.class_axis.is_some())
        {
            usage!(
                "--inner, --outer, --mask-threshold and --class-axis apply to --scores; \
                 --inner-scores/--outer-scores are used as they are"
            );
        }
        let (inner, outer) = if transformed {
            (ScoreTransform::Identity, ScoreTransform::Identity)
        } else {
            let parse = |name: &Option<String>, side| match name {
                Some(n) => self.options.apply(ScoreTransform::parse_for(side, n)?),
                None => self.options.apply(ScoreTransform::Identity),
            };
            (parse(&self.inner, Side::Inner)?, parse(&self.outer, Side::Outer)?)
        };
        if self.masks.masks.is_none() && self.files.subjects.manifest.is_none() {
            usage!("give --masks (or a --manifest with a mask column)");
        }
        let mask_arg = self.masks.masks.clone().unwrap_or_default();
        let (scores, masks) = ScoreSource::open(&self.files, Some(&mask_arg), self.options.class_axis)?;
        let Some(masks) = masks else { usage!("give --masks (or a --manifest with a mask column)") };
        if let (MaskSource::Stack(m), Some(image)) = (&masks, scores.stack_shape()) {
            let mut shape = vec![scores.n_images()];
            shape.extend(image);
            if m.info().shape != shape {
                anyhow::bail!(
                    "shape mismatch: masks {} have shape {:?}, scores {} have shape {:?}{}",
                    m.path().display(),
                    m.info().shape,
                    scores.describe(),
                    shape,
                    if scores.class_axis().is_some() { " (class axis reduced)" } else { "" }
                );
            }
        }
        let ndim = scores.ndim()?;
        let spacing = self.options.spacing.spacing();
        spacing.for_ndim(ndim).context("--spacing")?;
        let spacings = self.options.spacing.spacings(scores.n_images(), ndim)?;
        let calibrator = Calibrator::new(inner, outer).with_spacing(spacing);
        let images = self.selection.resolve(scores.n_images())?;
        Ok(Opened {
            masks,
            labels: self.masks.selection(),
            scores,
            calibrator,
            spacings,
            cohort_spacing: self.options.spacing.spacing.is_some(),
            images,
        })
    }
}

/// Put the file and the file position on a library error about image
/// `images[i]` of a stream: for stacks, the file and the image index; for
/// subjects, the subject's own file.
pub fn blame(e: Error, images: &[usize], scores: &ScoreSource, masks: Option<&MaskSource>) -> anyhow::Error {
    let local = match &e {
        Error::NanScore { image, .. }
        | Error::NonBinaryMask { image, .. }
        | Error::InvalidLabel { image, .. }
        | Error::EmptyImage { image, .. }
        | Error::ShapeMismatch { image, .. }
        | Error::DimensionMismatch { image, .. }
        | Error::TransformNan { image, .. }
        | Error::SpacingRequired { image, .. } => *image,
        _ => None,
    };
    let position = local.and_then(|i| images.get(i)).copied();
    let mask_error = matches!(e, Error::NonBinaryMask { .. } | Error::InvalidLabel { .. });
    let file = match (&e, masks, position) {
        (_, Some(m), Some(i)) if mask_error => Some(m.path(i).display().to_string()),
        (_, Some(MaskSource::Stack(m)), None) if mask_error => Some(m.path().display().to_string()),
        (
            Error::NanScore { .. }
            | Error::ShapeMismatch { .. }
            | Error::DimensionMismatch { .. }
            | Error::EmptyImage { .. }
            | Error::TransformNan { .. }
            | Error::SpacingRequired { .. },
            _,
            Some(i),
        ) => Some(scores.path_of(i)),
        _ => None,
    };
    let e = match (scores, position) {
        // a subject is named by its file, not by its position
        (ScoreSource::Subjects { .. }, Some(_)) => e.without_image(),
        (_, Some(i)) => e.in_image(i),
        _ => e,
    };
    match file {
        Some(f) => anyhow::Error::new(e).context(f),
        None => anyhow::Error::new(e),
    }
}

impl Opened {
    /// `(tau_i, gamma_i)` of the selected images, streamed in the files'
    /// native precision.
    ///
    /// # Errors
    /// A read error, a transform error, NaN, a non-binary mask, naming the
    /// file and the image by its file position.
    pub fn statistics(&self) -> Result<Calibration> {
        match self.scores.precision()? {
            Precision::F32 => self.statistics_in::<f32>(),
            Precision::F64 => self.statistics_in::<f64>(),
        }
    }

    fn statistics_in<A: ReadFloat>(&self) -> Result<Calibration> {
        let reader = self.reader("calibrating");
        let blame = |e| blame(e, &self.images, &self.scores, Some(&self.masks));
        let identity = self.calibrator.inner_transform() == &ScoreTransform::Identity
            && self.calibrator.outer_transform() == &ScoreTransform::Identity;
        let voxelwise = match &self.scores {
            ScoreSource::Transformed { .. } => true,
            ScoreSource::Raw { class_axis, .. } => identity && class_axis.is_none(),
            ScoreSource::Subjects { .. } => false,
        };
        let cal = if voxelwise {
            // the scores are used as they are: fold them chunk by chunk through small buffers
            self.calibrator
                .calibrate_statistics_stream(
                    reader.items(&self.images, |r, i| r.transformed_statistics::<A>(i)),
                    self.scores.ndim()?,
                )
                .map_err(blame)?
        } else {
            self.calibrator
                .calibrate_stream(reader.items(&self.images, |r, i| Ok((r.scan::<A>(i)?, r.mask(i)?))))
                .map_err(blame)?
        };
        reader.bar.finish_and_clear();
        Ok(cal)
    }

    /// The outer scores of the object voxels of the selected images, for
    /// risk control, streamed in the files' native precision.
    ///
    /// # Errors
    /// As [`Opened::statistics`].
    pub fn risk_statistics(&self) -> Result<RiskCalibration> {
        match self.scores.precision()? {
            Precision::F32 => self.risk_statistics_in::<f32>(),
            Precision::F64 => self.risk_statistics_in::<f64>(),
        }
    }

    fn risk_statistics_in<A: ReadFloat>(&self) -> Result<RiskCalibration> {
        let reader = self.reader("calibrating");
        let blame = |e| blame(e, &self.images, &self.scores, Some(&self.masks));
        let cal = match &self.scores {
            // used as they are (the calibrator's transforms are identities)
            ScoreSource::Transformed { .. } => {
                self.calibrator.risk_calibrate_stream(reader.items(&self.images, |r, i| {
                    let outer = match r.scores.read_transformed::<A>(i)? {
                        Transformed::Shared(a) | Transformed::Separate { outer: a, .. } => a,
                    };
                    Ok((outer, r.mask(i)?))
                }))
            }
            _ => self
                .calibrator
                .risk_calibrate_stream(reader.items(&self.images, |r, i| Ok((r.scan::<A>(i)?, r.mask(i)?)))),
        }
        .map_err(blame)?;
        reader.bar.finish_and_clear();
        Ok(cal)
    }

    /// Warnings about the inputs: probability-like scores thresholded at 0
    /// by a mask-based transform (checked on the first selected image).
    pub fn warnings(&self) -> Vec<confseg::Warning> {
        let Some(&first) = self.images.first() else { return Vec::new() };
        if matches!(self.scores, ScoreSource::Transformed { .. }) {
            return Vec::new();
        }
        let transforms = [self.calibrator.inner_transform(), self.calibrator.outer_transform()];
        if transforms.iter().all(|t| t.mask_threshold().is_none()) {
            return Vec::new();
        }
        let Ok((scores, _)) = self.scores.read_raw::<f64>(first) else { return Vec::new() };
        let mut out: Vec<confseg::Warning> =
            transforms.iter().filter_map(|t| t.warning_for(&scores)).collect();
        out.dedup();
        out
    }

    /// A shared reader of the selected images and their masks, with a
    /// progress bar labelled `what`.
    pub fn reader(&self, what: &str) -> Arc<Reader> {
        Arc::new(Reader {
            scores: self.scores.clone(),
            spacings: self.spacings.clone(),
            cohort_spacing: self.cohort_spacing,
            masks: Some((self.masks.clone(), self.labels.clone())),
            bar: report::progress(what, self.images.len(), self.scores.voxels_per_image()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spacing_labels_and_selection() {
        assert_eq!(parse_spacing("1, 1,2.5").unwrap(), Spacing::new(vec![1.0, 1.0, 2.5]).unwrap());
        assert!(parse_spacing("1,0").is_err());
        assert!(parse_spacing("1,x").is_err());
        assert_eq!(parse_labels("4,1, 2").unwrap(), Labels::select([1, 2, 4]).unwrap());
        assert!(parse_labels("1.5").is_err());
        assert_eq!(Selection::default().resolve(3).unwrap(), vec![0, 1, 2]);
    }
}
