//! Score and mask files opened for streaming: stacks, already transformed
//! stacks and per-subject files, read image by image on worker threads.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::{ArrayD, Axis, IxDyn};

use crate::calibrate::{Calibrator, ImageStatistics, Transformed};
use crate::error::{Error, Result};
use crate::image::{Geometry, Image, Spacing};
use crate::io::cohort::{is_per_subject, Cohort, Format, Pairing};
use crate::io::{NpyStack, Precision, ReadFloat};
use crate::mask::{Coding, Voxel};
use crate::stream::Lazy;
use crate::transform::{Transform, TwoClassSoftmax};

/// Which score files a run reads: the request, before anything is opened.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreFiles {
    /// One `.npy` stack `(N, spatial...)` of raw scores.
    Stack(PathBuf),
    /// Already transformed inner and outer score stacks, used as they are
    /// (the same file twice is opened and read once).
    Transformed {
        /// `f_I(s)`, `(N, spatial...)`.
        inner: PathBuf,
        /// `f_O(s)`, the same shape.
        outer: PathBuf,
    },
    /// Per-subject files (`.nii`, `.nii.gz`, single-image `.npy`) named by
    /// a folder, a glob or one file, paired with masks by subject ID.
    Subjects {
        /// The folder, glob or file.
        scores: String,
        /// How IDs are read from file names.
        pairing: Pairing,
    },
    /// Per-subject files listed in a CSV manifest (`id,scores,mask[,spacing]`).
    Manifest(PathBuf),
}

impl ScoreFiles {
    /// Raw scores at `path`: per-subject files if it is a folder, a glob
    /// or a NIfTI file, else a stack.
    #[must_use]
    pub fn raw(path: &Path, pairing: Pairing) -> ScoreFiles {
        let arg = path.to_string_lossy();
        if is_per_subject(&arg) {
            ScoreFiles::Subjects { scores: arg.into_owned(), pairing }
        } else {
            ScoreFiles::Stack(path.to_path_buf())
        }
    }
}

/// Resolve `axis` (negative counts from the end) among `ndim` axes.
///
/// # Errors
/// [`Error::InvalidParameter`] naming `name` when the axis is outside.
pub fn resolve_axis(axis: i64, ndim: usize, name: &'static str) -> Result<usize> {
    let resolved = if axis < 0 { i64::try_from(ndim).ok().map(|n| n + axis) } else { Some(axis) };
    resolved.and_then(|k| usize::try_from(k).ok()).filter(|&k| k < ndim).ok_or_else(|| Error::Options {
        reason: format!(
            "{name} {axis} is outside the {ndim} axes of an image \
             (axes count one image's own axes: 0 is the first, -1 the last)"
        ),
    })
}

/// Opened score files.
#[derive(Debug, Clone)]
pub enum ScoreSource {
    /// A stack of raw scores, with the class axis (of an image) holding
    /// two-class logits, if any.
    Stack {
        /// The stack.
        stack: NpyStack,
        /// Axis of an image holding two-class logits.
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
        /// Axis of a subject's image holding two-class logits, if any.
        class_axis: Option<usize>,
    },
}

/// Opened mask files.
#[derive(Debug, Clone)]
pub enum MaskSource {
    /// A stack `(N, spatial...)`.
    Stack(NpyStack),
    /// Per-subject files, paired with the scores in the cohort.
    Subjects(Arc<Cohort>),
}

impl MaskSource {
    /// The file of mask `i`, for messages.
    #[must_use]
    pub fn path(&self, i: usize) -> PathBuf {
        match self {
            MaskSource::Stack(s) => s.path().to_path_buf(),
            MaskSource::Subjects(c) => c.subjects().get(i).and_then(|s| s.mask.clone()).unwrap_or_default(),
        }
    }
}

/// Whether two paths name the same file (same device and inode).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    a == b
}

fn shape_mismatch(what: String) -> Error {
    Error::InvalidParameter { name: "inputs", value: "shapes".into(), reason: what }
}

impl ScoreSource {
    /// Per-subject score files, with the class axis (of one image,
    /// negative from the end) holding two classes, if any. For nnU-Net's
    /// two-class probabilities (`.npz`) the class axis is the last one,
    /// given or not, and its foreground channel is the image.
    ///
    /// # Errors
    /// An empty cohort; a header that cannot be read; a class axis
    /// outside the image or not of length 2; a cohort mixing `.npz`
    /// probabilities with other files.
    pub fn subjects(cohort: Arc<Cohort>, class_axis: Option<i64>) -> Result<ScoreSource> {
        let first = cohort.info(0)?;
        let mut class_axis =
            class_axis.map(|k| resolve_axis(k, first.shape.len(), "class_axis")).transpose()?;
        let npz = |s: &crate::io::cohort::Subject| Format::of(&s.scores) == Some(Format::Npz);
        if let Some(odd) = cohort.subjects().iter().find(|s| npz(s) != (first.format == Format::Npz)) {
            return Err(Error::Options {
                reason: format!(
                    "{}: a cohort mixes nnU-Net's probabilities (.npz) with other score files; give one kind",
                    odd.scores.display()
                ),
            });
        }
        // nnU-Net's two-class probabilities: the foreground channel is the image
        let last = first.shape.len() - 1;
        if first.format == Format::Npz && first.shape[last] == 2 {
            if class_axis.is_some_and(|k| k != last) {
                return Err(Error::Options {
                    reason: format!(
                        "{}: nnU-Net's probabilities have their classes on the last axis; leave out class_axis",
                        cohort.subjects()[0].scores.display()
                    ),
                });
            }
            class_axis = Some(last);
        }
        if let Some(k) = class_axis {
            check_two_classes(&first.shape, k, &cohort.subjects()[0].scores)?;
        }
        Ok(ScoreSource::Subjects { cohort, class_axis })
    }

    /// Open the score files (and, with `masks`, the masks: a stack for
    /// stacks, per-subject files for subjects), reading headers only.
    /// `class_axis` counts the axes of one image (negative from the end),
    /// for stacks and subjects alike.
    ///
    /// # Errors
    /// Unreadable or invalid files; mismatched shapes; a class axis outside
    /// the image or not of length 2; unpaired subjects.
    pub fn open(
        files: &ScoreFiles,
        masks: Option<&str>,
        class_axis: Option<i64>,
    ) -> Result<(ScoreSource, Option<MaskSource>)> {
        let subjects = |cohort: Cohort, manifest: bool| -> Result<(ScoreSource, Option<MaskSource>)> {
            let source = ScoreSource::subjects(Arc::new(cohort), class_axis)?;
            let masks = match source.cohort() {
                Some(c) if masks.is_some() || (manifest && c.subjects().iter().all(|s| s.mask.is_some())) => {
                    Some(MaskSource::Subjects(Arc::clone(c)))
                }
                _ => None,
            };
            Ok((source, masks))
        };
        match files {
            ScoreFiles::Manifest(m) => subjects(Cohort::from_manifest(m, masks.is_some())?, true),
            ScoreFiles::Subjects { scores, pairing } => {
                if masks.is_some_and(|m| !is_per_subject(m) && Path::new(m).is_file()) {
                    return Err(Error::Options {
                        reason: "per-subject scores need per-subject masks (a folder or a glob), not a stack"
                            .into(),
                    });
                }
                subjects(Cohort::discover(scores, masks, pairing)?, false)
            }
            ScoreFiles::Stack(path) => {
                let stack = NpyStack::open(path, "scores")?;
                let class_axis = class_axis
                    .map(|k| resolve_axis(k, stack.image_shape().len(), "class_axis"))
                    .transpose()?;
                if let Some(k) = class_axis {
                    check_two_classes(stack.image_shape(), k, path)?;
                }
                let masks = masks.map(stack_masks).transpose()?;
                Ok((ScoreSource::Stack { stack, class_axis }, masks))
            }
            ScoreFiles::Transformed { inner: ip, outer: op } => {
                let inner = NpyStack::open(ip, "inner scores")?;
                let masks = masks.map(stack_masks).transpose()?;
                if same_file(ip, op) {
                    return Ok((ScoreSource::Transformed { inner, outer: None }, masks));
                }
                let outer = NpyStack::open(op, "outer scores")?;
                if inner.info().shape != outer.info().shape {
                    return Err(shape_mismatch(format!(
                        "inner scores {} have shape {:?}, outer scores {} have shape {:?}",
                        ip.display(),
                        inner.info().shape,
                        op.display(),
                        outer.info().shape
                    )));
                }
                Ok((ScoreSource::Transformed { inner, outer: Some(outer) }, masks))
            }
        }
    }

    /// The same opened files read with the class axis `k` of one image
    /// (for a stack or subjects; transformed scores have none).
    ///
    /// # Errors
    /// An axis outside the image or not of length 2; transformed scores.
    pub fn with_class_axis(self, k: usize) -> Result<ScoreSource> {
        let k_signed = i64::try_from(k).unwrap_or(i64::MAX);
        match self {
            ScoreSource::Subjects { cohort, .. } => ScoreSource::subjects(cohort, Some(k_signed)),
            ScoreSource::Stack { stack, .. } => {
                let k = resolve_axis(k_signed, stack.image_shape().len(), "class_axis")?;
                check_two_classes(stack.image_shape(), k, stack.path())?;
                Ok(ScoreSource::Stack { stack, class_axis: Some(k) })
            }
            ScoreSource::Transformed { .. } => Err(Error::Options {
                reason: "transformed scores are used as they are: they have no class axis".into(),
            }),
        }
    }

    /// The first score file (the first subject's for subjects).
    #[must_use]
    pub fn path(&self) -> &Path {
        match self {
            ScoreSource::Stack { stack, .. } => stack.path(),
            ScoreSource::Transformed { inner, .. } => inner.path(),
            ScoreSource::Subjects { cohort, .. } => {
                cohort.subjects().first().map_or(Path::new(""), |s| s.scores.as_path())
            }
        }
    }

    /// The files, for messages: `a.npy`, `a.npy, b.npy` or `N subjects`
    /// (`1 subject`).
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            ScoreSource::Transformed { inner, outer: Some(o) } => {
                format!("{}, {}", inner.path().display(), o.path().display())
            }
            ScoreSource::Subjects { cohort, .. } => {
                format!("{} subject{}", cohort.len(), if cohort.len() == 1 { "" } else { "s" })
            }
            _ => self.path().display().to_string(),
        }
    }

    /// The score file of image `i`, for messages.
    #[must_use]
    pub fn path_of(&self, i: usize) -> PathBuf {
        match self {
            ScoreSource::Subjects { cohort, .. } => {
                cohort.subjects().get(i).map_or_else(PathBuf::new, |s| s.scores.clone())
            }
            _ => PathBuf::from(self.describe()),
        }
    }

    /// Number of images (subjects).
    #[must_use]
    pub fn n_images(&self) -> usize {
        match self {
            ScoreSource::Stack { stack, .. } => stack.len(),
            ScoreSource::Transformed { inner, .. } => inner.len(),
            ScoreSource::Subjects { cohort, .. } => cohort.len(),
        }
    }

    /// The shape of one image of a stack, after the class axis is reduced
    /// (`None` for subjects, whose shapes differ).
    #[must_use]
    pub fn stack_shape(&self) -> Option<Vec<usize>> {
        match self {
            ScoreSource::Stack { stack, class_axis } => {
                let mut s = stack.image_shape().to_vec();
                if let Some(k) = class_axis {
                    s.remove(*k);
                }
                Some(s)
            }
            ScoreSource::Transformed { inner, .. } => Some(inner.image_shape().to_vec()),
            ScoreSource::Subjects { .. } => None,
        }
    }

    /// The spatial dimension of an image (after the class axis is reduced
    /// and, for NIfTI subjects, NIfTI's non-spatial axes of length 1 are dropped).
    ///
    /// # Errors
    /// The first subject's header cannot be read.
    pub fn ndim(&self) -> Result<usize> {
        Ok(match (self.stack_shape(), self) {
            (Some(s), _) => s.len(),
            (None, ScoreSource::Subjects { cohort, class_axis }) => {
                let info = cohort.info(0)?;
                spatial_shape(&info.shape, *class_axis, info.geometry.is_some()).len()
            }
            (None, _) => 0,
        })
    }

    /// Voxels per image (of the first subject, for progress bars).
    #[must_use]
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
            ScoreSource::Stack { stack, .. } => stack.precision(),
            ScoreSource::Transformed { inner, outer } => {
                outer.as_ref().map_or(inner.precision(), |o| inner.precision().max(o.precision()))
            }
            ScoreSource::Subjects { cohort, .. } => cohort.precision()?,
        })
    }

    /// Whether the scores are already transformed.
    #[must_use]
    pub fn is_transformed(&self) -> bool {
        matches!(self, ScoreSource::Transformed { .. })
    }

    /// Whether the raw scores are per-class probabilities (nnU-Net's
    /// `.npz`), whose foreground channel is the image, rather than logits
    /// or scores.
    #[must_use]
    pub fn holds_probabilities(&self) -> bool {
        self.cohort()
            .and_then(|c| c.subjects().first())
            .is_some_and(|s| Format::of(&s.scores) == Some(Format::Npz))
    }

    /// The class axis of raw scores (an axis of one image).
    #[must_use]
    pub fn class_axis(&self) -> Option<usize> {
        match self {
            ScoreSource::Stack { class_axis, .. } | ScoreSource::Subjects { class_axis, .. } => *class_axis,
            ScoreSource::Transformed { .. } => None,
        }
    }

    /// The cohort of per-subject inputs.
    #[must_use]
    pub fn cohort(&self) -> Option<&Arc<Cohort>> {
        match self {
            ScoreSource::Subjects { cohort, .. } => Some(cohort),
            _ => None,
        }
    }

    /// Raw score image `i` (file position), class axis reduced (for
    /// transformed inputs: the inner scores), with the geometry of its file
    /// when it has one (NIfTI, a manifest spacing). Reads take `&self`, so
    /// worker threads read images in parallel.
    ///
    /// A two-class softmax over the class axis removes that axis and its
    /// spacing; NIfTI's non-spatial axes of length 1 (the 4th axis of an
    /// ITK vector image `(X, Y, Z, 1, C)`) are dropped with theirs.
    ///
    /// # Errors
    /// A read error or a bad class axis, naming the file.
    pub fn read_raw<A: ReadFloat>(&self, i: usize) -> Result<(ArrayD<A>, Option<Geometry>)> {
        let (a, geometry, path) = match self {
            ScoreSource::Stack { stack, .. } => {
                (stack.read_scores::<A>(i)?, None, stack.path().to_path_buf())
            }
            ScoreSource::Transformed { inner, .. } => {
                (inner.read_scores::<A>(i)?, None, inner.path().to_path_buf())
            }
            ScoreSource::Subjects { cohort, .. } => {
                let (a, g) = cohort.read_scores::<A>(i)?;
                (a, g, cohort.subjects()[i].scores.clone())
            }
        };
        let in_file = |error| Error::InFile { path: path.clone(), error: Box::new(error) };
        let Some(k) = self.class_axis() else { return Ok((a, geometry)) };
        if Format::of(&path) == Some(Format::Npz) {
            // already probabilities (nnU-Net): the foreground channel; the
            // geometry (from the NIfTI file beside it) has no class axis
            if a.shape().get(k) != Some(&2) {
                return Err(in_file(Error::Options {
                    reason: format!("shape {:?}: expected two classes on axis {k}", a.shape()),
                }));
            }
            return Ok((a.index_axis_move(Axis(k), 1), geometry));
        }
        let raw_ndim = a.ndim();
        let mut a = TwoClassSoftmax::new(Axis(k)).apply(&a).map_err(in_file)?;
        // a header's spacing has an entry for the class axis too (a manifest's has not)
        let counts_axes = |g: &Geometry, n: usize| g.spacing().as_slice().is_some_and(|s| s.len() == n);
        let mut geometry = match geometry {
            Some(g) if counts_axes(&g, raw_ndim) => Some(g.without_axis(k).map_err(in_file)?),
            g => g,
        };
        if let Some(g) = &mut geometry {
            // NIfTI's non-spatial axes (4th and later) of length 1 carry no voxels
            while a.ndim() > 3 && a.shape()[a.ndim() - 1] == 1 && counts_axes(g, a.ndim()) {
                let last = a.ndim() - 1;
                a = a.index_axis_move(Axis(last), 0);
                *g = g.without_axis(last).map_err(in_file)?;
            }
        }
        Ok((a, geometry))
    }

    /// The already transformed scores of image `i`; a file named twice is read once.
    ///
    /// # Errors
    /// A read error, naming the file.
    pub fn read_transformed<A: ReadFloat>(&self, i: usize) -> Result<Transformed<A, IxDyn>> {
        let (inner, outer) = match self {
            ScoreSource::Transformed { inner, outer } => (inner, outer.as_ref()),
            ScoreSource::Stack { stack, .. } => (stack, None),
            ScoreSource::Subjects { .. } => return Ok(Transformed::Shared(self.read_raw::<A>(i)?.0)),
        };
        let fi = inner.read_scores::<A>(i)?;
        Ok(match outer {
            Some(o) => Transformed::Separate { inner: fi, outer: o.read_scores::<A>(i)? },
            None => Transformed::Shared(fi),
        })
    }
}

/// The image shape once the class axis is reduced and (for files with a
/// geometry) trailing NIfTI axes of length 1 are dropped, as
/// [`ScoreSource::read_raw`] does.
fn spatial_shape(shape: &[usize], class_axis: Option<usize>, nifti: bool) -> Vec<usize> {
    let mut s = shape.to_vec();
    if let Some(k) = class_axis {
        s.remove(k);
        while nifti && s.len() > 3 && s.last() == Some(&1) {
            s.pop();
        }
    }
    s
}

fn check_two_classes(shape: &[usize], k: usize, path: &Path) -> Result<()> {
    if shape[k] == 2 {
        return Ok(());
    }
    Err(Error::Options {
        reason: format!(
            "class_axis {k} needs an axis of length 2 (two-class logits); an image of {} has shape {shape:?} \
             (for more classes, calibrate structures)",
            path.display()
        ),
    })
}

/// A masks stack.
fn stack_masks(path: &str) -> Result<MaskSource> {
    if is_per_subject(path) {
        return Err(Error::Options {
            reason: "a score stack needs a mask stack (an .npy file), not per-subject masks".into(),
        });
    }
    Ok(MaskSource::Stack(NpyStack::open(path, "masks")?))
}

/// Called once per image read: counts progress, and may stop the run (an
/// `Err`, e.g. on Ctrl-C) before the next image.
pub type Tick = Arc<dyn Fn() -> Result<()> + Send + Sync>;

fn no_masks() -> Error {
    Error::InvalidParameter { name: "masks", value: "none".into(), reason: "this run reads no masks".into() }
}

/// The score files, spacings and masks of a run, shared by the lazy items
/// of a stream (each worker reads its own images).
#[derive(Clone)]
pub struct Reader {
    /// The scores.
    pub scores: ScoreSource,
    /// Spacing per image of the files, if given per image.
    pub spacings: Option<Arc<[Spacing]>>,
    /// Whether one spacing for every image overrides the files' own.
    pub cohort_spacing: bool,
    /// The masks and how they are read (the labels that are the object,
    /// the value of ignored voxels), if the run reads masks.
    pub masks: Option<(MaskSource, Coding)>,
    /// Called after each image is read.
    pub tick: Option<Tick>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("scores", &self.scores)
            .field("cohort_spacing", &self.cohort_spacing)
            .field("masks", &self.masks)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// A reader of `scores` alone (no masks, the files' own geometry).
    #[must_use]
    pub fn new(scores: ScoreSource) -> Reader {
        Reader { scores, spacings: None, cohort_spacing: false, masks: None, tick: None }
    }

    /// Raw image `i` with its spacing, by precedence: a per-image spacing,
    /// else (unless one cohort spacing overrides the files) its file's
    /// geometry, else none of its own (the cohort default applies).
    ///
    /// # Errors
    /// As [`ScoreSource::read_raw`]; a spacing that does not fit.
    pub fn image<A: ReadFloat>(&self, i: usize) -> Result<Image<'static, A, IxDyn>> {
        let (s, geometry) = self.scores.read_raw::<A>(i)?;
        match (&self.spacings, geometry) {
            (Some(sp), _) => Image::new(s, sp[i].clone()),
            (None, Some(g)) if !self.cohort_spacing => Image::with_geometry(s, g),
            _ => Ok(Image::plain(s)),
        }
    }

    /// `(tau, gamma)` of image `i` of scores used as they are (transformed
    /// inputs, or raw scores with identity transforms), read chunk by chunk,
    /// with the calibrator's tolerances and the image's spacing.
    ///
    /// # Errors
    /// A read error or a value that does not fit (naming the file); NaN in the
    /// scores or a mask value the labels do not accept (naming the voxel).
    pub fn transformed_statistics<A: ReadFloat, TI: Transform, TO: Transform>(
        &self,
        i: usize,
        calibrator: &Calibrator<TI, TO>,
    ) -> Result<ImageStatistics> {
        let (inner, outer) = match &self.scores {
            ScoreSource::Transformed { inner, outer } => (inner, outer.as_ref()),
            ScoreSource::Stack { stack, .. } => (stack, None),
            ScoreSource::Subjects { .. } => return Err(no_masks()),
        };
        let Some((MaskSource::Stack(masks), labels)) = &self.masks else { return Err(no_masks()) };
        let spacing = self.spacings.as_ref().map(|sp| &sp[i]);
        super::chunked::transformed_statistics::<A>(inner, outer, masks, labels, i, |shape| {
            calibrator.fold(shape, spacing)
        })
    }

    /// Label map `i` as its values (for several structures).
    ///
    /// # Errors
    /// A read error, naming the file.
    pub fn label_map(&self, i: usize) -> Result<ArrayD<f64>> {
        match &self.masks {
            Some((MaskSource::Stack(m), _)) => m.read_scores::<f64>(i),
            Some((MaskSource::Subjects(c), _)) => {
                c.check_geometry(i)?;
                c.read_label_map(i)
            }
            None => Err(no_masks()),
        }
    }

    /// Mask `i`: each voxel object, background or (with an ignore value)
    /// ignored.
    ///
    /// # Errors
    /// A read error or a value the labels do not accept, naming the file.
    pub fn mask(&self, i: usize) -> Result<ArrayD<Voxel>> {
        let (codes, coding, path) = match &self.masks {
            Some((MaskSource::Stack(m), coding)) => (m.read_mask(i, coding)?, coding, m.path().to_path_buf()),
            Some((MaskSource::Subjects(c), coding)) => {
                c.check_geometry(i)?;
                let path = c.subjects().get(i).and_then(|s| s.mask.clone()).unwrap_or_default();
                (c.read_mask(i, coding)?, coding, path)
            }
            None => return Err(no_masks()),
        };
        // a uint8 file read as a binary mask arrives as it is: its values
        // are checked here
        Voxel::from_codes(&codes, coding.ignore().is_some()).map_err(|e| {
            let e = match (&self.masks, e) {
                (Some((MaskSource::Stack(_), _)), Error::NonBinaryMask { index, value, .. }) => {
                    Error::NonBinaryMask { image: Some(i), index, value }
                }
                (_, e) => e,
            };
            crate::io::in_file(&path, e)
        })
    }

    /// Lazy items `f(reader, i)` for the images at `images`, each loaded on
    /// the worker thread that processes it; the tick runs after each.
    pub fn items<'r, T, F>(
        self: &'r Arc<Self>,
        images: &'r [usize],
        f: F,
    ) -> impl Iterator<Item = Result<Lazy<impl FnOnce() -> Result<T> + Send + 'r>>> + Send + 'r
    where
        F: Fn(&Reader, usize) -> Result<T> + Send + Sync + Copy + 'r,
        T: 'r,
    {
        let reader = Arc::clone(self);
        images.iter().copied().map(move |i| {
            let r = Arc::clone(&reader);
            Ok(Lazy(move || {
                let out = f(&r, i)?;
                if let Some(tick) = &r.tick {
                    tick()?;
                }
                Ok(out)
            }))
        })
    }

    /// Put the file and the file position on a library error about image
    /// `images[i]` of a stream: for stacks, the image index in the file;
    /// for subjects, the subject's own file.
    #[must_use]
    pub fn blame(&self, e: Error, images: &[usize]) -> Error {
        let local = e.image();
        let position = local.and_then(|i| images.get(i)).copied();
        let mask_error = matches!(e, Error::NonBinaryMask { .. } | Error::InvalidLabel { .. });
        let masks = self.masks.as_ref().map(|(m, _)| m);
        let file = match (&e, masks, position) {
            (_, Some(m), Some(i)) if mask_error => Some(m.path(i)),
            (_, Some(MaskSource::Stack(m)), None) if mask_error => Some(m.path().to_path_buf()),
            (
                Error::NanScore { .. }
                | Error::ShapeMismatch { .. }
                | Error::DimensionMismatch { .. }
                | Error::EmptyImage { .. }
                | Error::TransformNan { .. }
                | Error::InfiniteScore { .. }
                | Error::SpacingRequired { .. },
                _,
                Some(i),
            ) => Some(self.scores.path_of(i)),
            _ => None,
        };
        let e = match (&self.scores, position) {
            // a subject is named by its file, not by its position
            (ScoreSource::Subjects { .. }, Some(_)) => e.without_image(),
            (_, Some(i)) => e.in_image(i),
            _ => e,
        };
        match file {
            Some(path) => Error::InFile { path, error: Box::new(e) },
            None => e,
        }
    }
}
