//! Labelled calibration inputs: the request a user makes in words and file
//! names, opened and cross-checked once, then streamed through the
//! library's calibration and validation in the files' native precision.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use ndarray::{ArrayD, IxDyn};

use crate::calibrate::{Calibration, Calibrator, RiskCalibration, Transformed};
use crate::error::{Error, Result, Warning};
use crate::evaluate::{Pool, Splits};
use crate::groups::{Group, GroupedSets, SmallGroups, Strata, Stratification};
use crate::image::{AsImage, Image, Spacing};
use crate::io::cohort::Cohort;
use crate::io::{Labels, Precision, ReadFloat};
use crate::levels::Guarantee;
use crate::mask::{Coding, Voxel};
use crate::quantile::Alpha;
use crate::risk::Risk;
use crate::tolerance::Tolerances;
use crate::transform::ScoreTransform;

use super::source::{MaskSource, Reader, ScoreFiles, ScoreSource, Tick};

/// Which images of the input files are used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Use only these images, in this order (a 1-D integer `.npy` of
    /// 0-based positions).
    pub indices: Option<PathBuf>,
    /// Then drop these (a 1-D integer `.npy`, e.g. a learning set).
    pub exclude: Option<PathBuf>,
}

impl Selection {
    /// The selected file positions among `n` images, in order.
    ///
    /// # Errors
    /// Invalid index files (out of range, duplicates, ...); a selection
    /// that leaves no image of a non-empty input, naming the file that
    /// emptied it.
    pub fn resolve(&self, n: usize) -> Result<Vec<usize>> {
        let none_left = |path: &PathBuf, reason: String| Error::File {
            path: path.clone(),
            problem: crate::error::FileProblem::BadData { reason },
        };
        let base = match &self.indices {
            Some(p) => {
                let base = crate::io::read_indices(p, n)?;
                if base.is_empty() && n > 0 {
                    return Err(none_left(p, format!("lists no image index; give at least one of 0..{n}")));
                }
                base
            }
            None => (0..n).collect(),
        };
        let Some(p) = &self.exclude else { return Ok(base) };
        let mut excluded = vec![false; n];
        for i in crate::io::read_indices(p, n)? {
            excluded[i] = true;
        }
        let k = base.len();
        let left: Vec<usize> = base.into_iter().filter(|&i| !excluded[i]).collect();
        if left.is_empty() && k > 0 {
            return Err(none_left(p, format!("excludes all {k} selected images; none is left")));
        }
        Ok(left)
    }
}

/// A raw image with its mask, as the calibration streams read them.
type Pair<A> = (Image<'static, A, IxDyn>, ArrayD<Voxel>);

/// How the calibration images are grouped for group-conditional
/// calibration.
#[derive(Debug, Clone, PartialEq)]
pub enum Grouping {
    /// One label per selected image (see [`image_groups`]).
    Labels(Vec<Group>),
    /// Strata computed from each image's prediction, by edges fixed before
    /// calibration; prediction recomputes them for new images.
    Strata(Strata),
}

/// Sets fitted per group, with the groups of the calibration images and,
/// for the conformal modes, their statistics.
#[derive(Debug, Clone)]
pub struct GroupFit {
    /// The sets per group (with the strata, if the groups are strata).
    pub sets: GroupedSets,
    /// The group of each selected image.
    pub groups: Vec<Group>,
    /// The conformal statistics (`None` for risk control).
    pub calibration: Option<Calibration>,
}

impl GroupFit {
    /// Every warning of the fit: each group's (with what its statistics
    /// show, for the conformal modes) and the pooled groups'.
    ///
    /// # Errors
    /// As [`GroupedSets::calibration_warnings`].
    pub fn warnings(&self) -> Result<Vec<Warning>> {
        match &self.calibration {
            Some(c) => self.sets.calibration_warnings(c, &self.groups),
            None => Ok(self.sets.warnings()),
        }
    }
}

/// The group of each image at `images` (positions in the files), for
/// group-conditional calibration and prediction: from a file of one
/// integer label per image of the files, or from the `group` column of a
/// manifest; `None` when neither gives groups.
///
/// # Errors
/// Both a file and a manifest column; as [`crate::io::read_groups`].
pub fn image_groups(
    scores: &ScoreSource,
    file: Option<&std::path::Path>,
    images: &[usize],
) -> Result<Option<Vec<Group>>> {
    let column = scores.cohort().filter(|c| c.subjects().iter().any(|s| s.group.is_some()));
    let all: Vec<Group> = match (file, column) {
        (Some(_), Some(_)) => {
            return Err(Error::Options {
                reason: "the manifest has a group column: give the groups there or in a file, not both"
                    .into(),
            })
        }
        (Some(path), None) => {
            crate::io::read_groups(path, scores.n_images())?.into_iter().map(Group::Id).collect()
        }
        (None, Some(cohort)) => cohort
            .subjects()
            .iter()
            .map(|s| {
                let label = s.group.as_deref().unwrap_or_default();
                label.parse::<Group>().map_err(|e| Error::Options {
                    reason: format!("subject {}: group {label:?} in the manifest: {e}", s.id),
                })
            })
            .collect::<Result<_>>()?,
        (None, None) => return Ok(None),
    };
    Ok(Some(images.iter().filter_map(|&i| all.get(i).cloned()).collect()))
}

/// Where the voxel spacing of each image comes from.
///
/// Precedence, per image: a per-image spacing file; else one cohort
/// spacing if given (it overrides the files' headers); else the image
/// file's own geometry (NIfTI header, manifest column); else unit spacing.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpacingSource {
    /// One spacing for every image.
    pub cohort: Option<Spacing>,
    /// An `(N, ndim)` `.npy` array, row `i` for image `i` of the files.
    pub per_image: Option<PathBuf>,
}

impl SpacingSource {
    /// Per-image spacings from the file, one per image of `n_images`
    /// images of dimension `ndim`.
    ///
    /// # Errors
    /// The file cannot be read, does not have shape `(n_images, ndim)`, or
    /// holds a value that is not a positive finite spacing.
    pub fn per_image(&self, n_images: usize, ndim: usize) -> Result<Option<Vec<Spacing>>> {
        let Some(path) = &self.per_image else { return Ok(None) };
        let a = crate::io::read_array(path, n_images.saturating_mul(ndim).max(1))?;
        let in_file = |error| Error::InFile { path: path.clone(), error: Box::new(error) };
        if a.shape() != [n_images, ndim] {
            return Err(in_file(Error::InvalidParameter {
                name: "spacing file",
                value: format!("shape {:?}", a.shape()),
                reason: format!("expected ({n_images}, {ndim}): one row of {ndim} values per image"),
            }));
        }
        a.outer_iter()
            .map(|row| Spacing::new(row.iter().copied().collect()).map_err(in_file))
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// What a calibration run reads, as a user names it: score and mask files,
/// which labels are the object, the transforms and their options, spacing
/// and the selected images. [`Request::open`] checks it all at once.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// The score files.
    pub scores: ScoreFiles,
    /// The masks: a stack, or per-subject files (folder, glob); `None` with
    /// a manifest that has a mask column.
    pub masks: Option<String>,
    /// Which labels of the masks are the object.
    pub labels: Labels,
    /// The mask value of voxels to ignore (neither object nor background),
    /// if any.
    pub ignore_label: Option<i64>,
    /// `f_I` and `f_O` for raw scores (must be identities for transformed scores).
    pub transforms: (ScoreTransform, ScoreTransform),
    /// The predicted-mask threshold of mask-based transforms, if given.
    pub mask_threshold: Option<f64>,
    /// The axis of one image holding two-class logits (negative from the end).
    pub class_axis: Option<i64>,
    /// Voxel spacing.
    pub spacing: SpacingSource,
    /// The images used.
    pub selection: Selection,
    /// The tolerance of each side's event (containment by default).
    pub tolerances: Tolerances,
}

impl Request {
    /// A request for raw or transformed `scores` and `masks`, binary masks,
    /// identity transforms, no class axis, the files' own spacing and
    /// every image.
    #[must_use]
    pub fn new(scores: ScoreFiles, masks: Option<String>) -> Request {
        Request {
            scores,
            masks,
            labels: Labels::Binary,
            ignore_label: None,
            transforms: (ScoreTransform::Identity, ScoreTransform::Identity),
            mask_threshold: None,
            class_axis: None,
            spacing: SpacingSource::default(),
            selection: Selection::default(),
            tolerances: Tolerances::NONE,
        }
    }

    /// Open and cross-check everything: masks, scores, shapes, transforms
    /// and spacing for the image dimension, selection. Reads headers only.
    ///
    /// # Errors
    /// Transform options with already transformed scores; file errors;
    /// shape mismatches; invalid transforms or spacing; index files.
    pub fn open(&self) -> Result<Inputs> {
        let transformed = matches!(self.scores, ScoreFiles::Transformed { .. });
        let identity = |t: &ScoreTransform| *t == ScoreTransform::Identity;
        if transformed
            && (!identity(&self.transforms.0)
                || !identity(&self.transforms.1)
                || self.mask_threshold.is_some()
                || self.class_axis.is_some())
        {
            return Err(Error::Options {
                reason: "transforms, a mask threshold and a class axis apply to raw scores; \
                         already transformed inner and outer scores are used as they are"
                    .into(),
            });
        }
        let with_threshold = |t: &ScoreTransform| match self.mask_threshold {
            Some(x) => t.clone().with_mask_threshold(x),
            None => Ok(t.clone()),
        };
        let (inner, outer) = (with_threshold(&self.transforms.0)?, with_threshold(&self.transforms.1)?);
        if self.masks.is_none() && !matches!(self.scores, ScoreFiles::Manifest(_)) {
            return Err(no_masks());
        }
        let (scores, masks) =
            ScoreSource::open(&self.scores, Some(self.masks.as_deref().unwrap_or("")), self.class_axis)?;
        let Some(masks) = masks else { return Err(no_masks()) };
        if scores.holds_probabilities() && scores.class_axis().is_none() {
            return Err(Error::Options {
                reason: format!(
                    "{} holds nnU-Net's probabilities of more than two classes: calibrate them as \
                     structures, with the last axis (-1) as the class axis",
                    scores.describe()
                ),
            });
        }
        if let (MaskSource::Stack(m), Some(image)) = (&masks, scores.stack_shape()) {
            let mut shape = vec![scores.n_images()];
            shape.extend(image);
            if m.info().shape != shape {
                return Err(Error::InvalidParameter {
                    name: "inputs",
                    value: "shapes".into(),
                    reason: format!(
                        "masks {} have shape {:?}, scores {} have shape {:?}{}",
                        m.path().display(),
                        m.info().shape,
                        scores.describe(),
                        shape,
                        if scores.class_axis().is_some() { " (class axis reduced)" } else { "" }
                    ),
                });
            }
        }
        let ndim = scores.ndim()?;
        let cohort_spacing = self.spacing.cohort.clone().unwrap_or_default();
        cohort_spacing.for_ndim(ndim)?;
        let spacings = self.spacing.per_image(scores.n_images(), ndim)?;
        let calibrator =
            Calibrator::new(inner, outer).with_spacing(cohort_spacing).with_tolerances(self.tolerances);
        let images = self.selection.resolve(scores.n_images())?;
        let reader = Reader {
            scores,
            spacings: spacings.map(Arc::from),
            cohort_spacing: self.spacing.cohort.is_some(),
            masks: Some((masks, Coding::new(self.labels.clone(), self.ignore_label)?)),
            tick: None,
        };
        Ok(Inputs {
            reader: Arc::new(reader),
            calibrator,
            images,
            given_threshold: self.mask_threshold,
            precision: None,
        })
    }
}

fn no_masks() -> Error {
    Error::Options { reason: "calibration needs masks (or a manifest with a mask column)".into() }
}

/// Opened, cross-checked calibration inputs.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The files, spacings and masks, read image by image.
    pub reader: Arc<Reader>,
    /// Transforms and cohort spacing (identities for transformed scores).
    pub calibrator: Calibrator<ScoreTransform, ScoreTransform>,
    /// Selected images (file positions), in order.
    pub images: Vec<usize>,
    /// The predicted-mask threshold given with the request.
    given_threshold: Option<f64>,
    /// The float type to compute in, if not the files' own.
    precision: Option<Precision>,
}

impl Inputs {
    /// Inputs over an opened cohort whose subjects all have masks: the
    /// subjects at `images` (all if `None`), each with its file's geometry,
    /// else the calibrator's spacing.
    ///
    /// # Errors
    /// [`Error::Options`] if a subject has no mask file; an index outside
    /// the cohort.
    pub fn from_cohort(
        cohort: Arc<Cohort>,
        labels: impl Into<Coding>,
        calibrator: Calibrator<ScoreTransform, ScoreTransform>,
        images: Option<Vec<usize>>,
    ) -> Result<Inputs> {
        if let Some(s) = cohort.subjects().iter().find(|s| s.mask.is_none()) {
            return Err(Error::Options {
                reason: format!("subject {} has no mask file; calibration needs every subject's mask", s.id),
            });
        }
        let n = cohort.len();
        let images = images.unwrap_or_else(|| (0..n).collect());
        if let Some(&i) = images.iter().find(|&&i| i >= n) {
            return Err(Error::InvalidParameter {
                name: "indices",
                value: i.to_string(),
                reason: format!("the cohort has {n} subjects"),
            });
        }
        let reader = Reader {
            masks: Some((MaskSource::Subjects(Arc::clone(&cohort)), labels.into())),
            ..Reader::new(ScoreSource::subjects(cohort, None)?)
        };
        Ok(Inputs { reader: Arc::new(reader), calibrator, images, given_threshold: None, precision: None })
    }

    /// These inputs computed in `precision` instead of the narrowest type
    /// that holds every file's values exactly (`F32` rounds `float64` files).
    #[must_use]
    pub fn with_precision(mut self, precision: Precision) -> Inputs {
        self.precision = Some(precision);
        self
    }

    /// The float type the images are computed in.
    ///
    /// # Errors
    /// A subject's header cannot be read.
    pub fn precision(&self) -> Result<Precision> {
        self.precision.map_or_else(|| self.scores().precision(), Ok)
    }

    /// These inputs, calling `tick` after each image is read (progress; an
    /// `Err` stops the run).
    #[must_use]
    pub fn with_tick(mut self, tick: Tick) -> Inputs {
        Arc::make_mut(&mut self.reader).tick = Some(tick);
        self
    }

    /// The scores.
    #[must_use]
    pub fn scores(&self) -> &ScoreSource {
        &self.reader.scores
    }

    /// The masks.
    #[must_use]
    pub fn masks(&self) -> Option<&MaskSource> {
        self.reader.masks.as_ref().map(|(m, _)| m)
    }

    /// The labels that are the object.
    #[must_use]
    pub fn labels(&self) -> Labels {
        self.reader.masks.as_ref().map(|(_, l)| l.labels().clone()).unwrap_or_default()
    }

    /// The mask value of ignored voxels, if any.
    #[must_use]
    pub fn ignore_label(&self) -> Option<i64> {
        self.reader.masks.as_ref().and_then(|(_, l)| l.ignore())
    }

    /// Whether the scores are used as they are, voxel by voxel (already
    /// transformed, or raw with identity transforms and no class axis):
    /// then they are folded chunk by chunk, never whole.
    #[must_use]
    pub fn is_voxelwise(&self) -> bool {
        let identity = self.calibrator.inner_transform() == &ScoreTransform::Identity
            && self.calibrator.outer_transform() == &ScoreTransform::Identity;
        match self.scores() {
            ScoreSource::Transformed { .. } => true,
            ScoreSource::Stack { class_axis, .. } => identity && class_axis.is_none(),
            ScoreSource::Subjects { .. } => false,
        }
    }

    /// The predicted-mask threshold for baselines that dilate the
    /// predicted mask: the outer transform's (its `:threshold=`), else the
    /// inner one's, else the request's, else 0.
    #[must_use]
    pub fn mask_threshold(&self) -> f64 {
        self.calibrator.mask_threshold().or(self.given_threshold).unwrap_or(0.0)
    }

    /// `(tau_i, gamma_i)` of the selected images, streamed in the files'
    /// native precision (`f32` files in `f32`).
    ///
    /// # Errors
    /// A read error, a transform error, NaN, a non-binary mask, naming the
    /// file and the image by its file position.
    pub fn statistics(&self) -> Result<Calibration> {
        match self.precision()? {
            Precision::F32 => self.statistics_in::<f32>(),
            Precision::F64 => self.statistics_in::<f64>(),
        }
    }

    fn statistics_in<A: ReadFloat>(&self) -> Result<Calibration> {
        let reader = &self.reader;
        let cal = if self.is_voxelwise() {
            let calibrator = &self.calibrator;
            calibrator.calibrate_statistics_stream(
                reader.items(&self.images, |r, i| r.transformed_statistics::<A, _, _>(i, calibrator)),
                self.scores().ndim()?,
            )
        } else {
            self.calibrator
                .calibrate_stream(reader.items(&self.images, |r, i| Ok((r.image::<A>(i)?, r.mask(i)?))))
        };
        cal.map_err(|e| reader.blame(e, &self.images))
    }

    /// [`Inputs::statistics`] and each selected image's stratum under
    /// `strata`, in one pass: every image is read once, whole, its stratum
    /// computed from its scores (predicted mask `scores >`
    /// [`Inputs::mask_threshold`], its own spacing else the default) and
    /// its statistics from the same image.
    ///
    /// # Errors
    /// As [`Inputs::statistics`]; [`Error::Options`] for already
    /// transformed scores (strata are computed from raw scores).
    pub fn statistics_with_strata(&self, strata: &Strata) -> Result<(Calibration, Vec<Group>)> {
        self.check_strata_source()?;
        match self.precision()? {
            Precision::F32 => self.strata_in::<f32>(strata),
            Precision::F64 => self.strata_in::<f64>(strata),
        }
    }

    fn strata_in<A: ReadFloat>(&self, strata: &Strata) -> Result<(Calibration, Vec<Group>)> {
        let slots = Mutex::new(vec![None; self.scores().n_images()]);
        let cal = self
            .calibrator
            .calibrate_stream(self.reader.items(&self.images, self.stratified::<A>(strata, &slots)))
            .map_err(|e| self.reader.blame(e, &self.images))?;
        Ok((cal, self.recorded(slots)?))
    }

    /// [`Inputs::risk_statistics`] and each selected image's stratum under
    /// `strata`, in one pass, as [`Inputs::statistics_with_strata`].
    ///
    /// # Errors
    /// As [`Inputs::risk_statistics`] and [`Inputs::statistics_with_strata`].
    pub fn risk_statistics_with_strata(
        &self,
        risk: Risk,
        strata: &Strata,
    ) -> Result<(RiskCalibration, Vec<Group>)> {
        self.check_strata_source()?;
        match self.precision()? {
            Precision::F32 => self.risk_strata_in::<f32>(risk, strata),
            Precision::F64 => self.risk_strata_in::<f64>(risk, strata),
        }
    }

    fn risk_strata_in<A: ReadFloat>(
        &self,
        risk: Risk,
        strata: &Strata,
    ) -> Result<(RiskCalibration, Vec<Group>)> {
        let slots = Mutex::new(vec![None; self.scores().n_images()]);
        let cal = self
            .calibrator
            .risk_calibrate_stream(
                risk,
                self.reader.items(&self.images, self.stratified::<A>(strata, &slots)),
            )
            .map_err(|e| self.reader.blame(e, &self.images))?;
        Ok((cal, self.recorded(slots)?))
    }

    /// Strata are computed from raw scores.
    fn check_strata_source(&self) -> Result<()> {
        if self.scores().is_transformed() {
            return Err(Error::Options {
                reason: "strata are computed from raw scores, not from already transformed ones: give \
                         the groups as labels instead"
                    .into(),
            });
        }
        Ok(())
    }

    /// Each image read whole with its mask, its stratum under `strata`
    /// (predicted mask `scores >` [`Inputs::mask_threshold`], its own
    /// spacing else the default) recorded in `slots` on the way.
    fn stratified<'a, A: ReadFloat>(
        &'a self,
        strata: &'a Strata,
        slots: &'a Mutex<Vec<Option<Group>>>,
    ) -> impl Fn(&Reader, usize) -> Result<Pair<A>> + Send + Sync + Copy + 'a {
        let (t, default) = (self.mask_threshold(), self.calibrator.spacing());
        move |r, i| {
            let image = r.image::<A>(i)?;
            let g = strata.stratum(image.scores(), t, image.spacing().unwrap_or(default))?;
            if let Ok(mut v) = slots.lock() {
                v[i] = Some(g);
            }
            Ok((image, r.mask(i)?))
        }
    }

    /// The strata recorded for the selected images.
    fn recorded(&self, slots: Mutex<Vec<Option<Group>>>) -> Result<Vec<Group>> {
        let slots = slots.into_inner().unwrap_or_default();
        let groups = self.images.iter().map(|&i| slots.get(i).cloned().flatten()).collect::<Option<Vec<_>>>();
        groups.ok_or_else(|| Error::Options { reason: "a stratum was not computed".into() })
    }

    /// Fit `guarantee` per group (conformal modes with
    /// [`Calibrator::fit_groups`], risk control with
    /// [`Calibrator::fit_groups_risk_control`]), the statistics computed in
    /// one pass over the images (with the strata, if the groups are
    /// strata), small groups handled by `small_groups`.
    ///
    /// # Errors
    /// As the statistics and the fits.
    pub fn fit_groups(
        &self,
        guarantee: Guarantee,
        grouping: &Grouping,
        small_groups: SmallGroups,
    ) -> Result<GroupFit> {
        let labels = |g: &Vec<Group>| -> Result<Vec<Group>> {
            crate::groups::check_labels(g, self.images.len(), "the selected images")?;
            Ok(g.clone())
        };
        let (sets, groups, calibration) = match guarantee {
            Guarantee::Conformal(mode) => {
                let (cal, groups) = match grouping {
                    Grouping::Labels(g) => (self.statistics()?, labels(g)?),
                    Grouping::Strata(s) => self.statistics_with_strata(s)?,
                };
                (self.calibrator.fit_groups(&cal, &groups, mode, small_groups)?, groups, Some(cal))
            }
            Guarantee::RiskControl(level) => {
                let (risk, groups) = match grouping {
                    Grouping::Labels(g) => (self.risk_statistics(level.risk())?, labels(g)?),
                    Grouping::Strata(s) => self.risk_statistics_with_strata(level.risk(), s)?,
                };
                (self.calibrator.fit_groups_risk_control(&risk, &groups, level, small_groups)?, groups, None)
            }
        };
        let sets = match grouping {
            Grouping::Strata(s) => {
                sets.with_strata(Stratification { strata: s.clone(), mask_threshold: self.mask_threshold() })
            }
            Grouping::Labels(_) => sets,
        };
        Ok(GroupFit { sets, groups, calibration })
    }

    /// What risk control of `risk` keeps of the selected images (the outer
    /// scores of the object voxels for recall, the inner scores of every
    /// voxel for precision), streamed in the files' native precision.
    ///
    /// # Errors
    /// As [`Inputs::statistics`].
    pub fn risk_statistics(&self, risk: Risk) -> Result<RiskCalibration> {
        match self.precision()? {
            Precision::F32 => self.risk_statistics_in::<f32>(risk),
            Precision::F64 => self.risk_statistics_in::<f64>(risk),
        }
    }

    fn risk_statistics_in<A: ReadFloat>(&self, risk: Risk) -> Result<RiskCalibration> {
        let reader = &self.reader;
        let cal = if self.scores().is_transformed() {
            // used as they are (the calibrator's transforms are identities)
            self.calibrator.risk_calibrate_stream(
                risk,
                reader.items(&self.images, |r, i| {
                    let side = match (r.scores.read_transformed::<A>(i)?, risk) {
                        (Transformed::Shared(a), _)
                        | (Transformed::Separate { outer: a, .. }, Risk::Recall)
                        | (Transformed::Separate { inner: a, .. }, Risk::Precision) => a,
                    };
                    Ok((side, r.mask(i)?))
                }),
            )
        } else {
            self.calibrator.risk_calibrate_stream(
                risk,
                reader.items(&self.images, |r, i| Ok((r.image::<A>(i)?, r.mask(i)?))),
            )
        };
        cal.map_err(|e| reader.blame(e, &self.images))
    }

    /// The validation pool of the selected images (statistics computed
    /// once per image), with the dilation baselines at the transforms'
    /// predicted-mask threshold ([`Inputs::mask_threshold`]).
    ///
    /// # Errors
    /// As [`Inputs::statistics`].
    pub fn pool(&self) -> Result<Pool> {
        match self.precision()? {
            Precision::F32 => self.pool_in::<f32>(),
            Precision::F64 => self.pool_in::<f64>(),
        }
    }

    fn pool_in<A: ReadFloat>(&self) -> Result<Pool> {
        let reader = &self.reader;
        let threshold = self.mask_threshold();
        let pool = if self.scores().is_transformed() {
            Pool::from_transformed_stream(
                &self.calibrator,
                reader.items(&self.images, |r, i| Ok((r.scores.read_transformed::<A>(i)?, r.mask(i)?))),
                threshold,
            )
        } else {
            Pool::from_stream(
                &self.calibrator,
                reader.items(&self.images, |r, i| Ok((r.image::<A>(i)?, r.mask(i)?))),
                threshold,
            )
        };
        pool.map_err(|e| reader.blame(e, &self.images))
    }

    /// Rank candidate transforms on the selected images and choose the
    /// alpha split (METHOD.md §6), streamed in the files' precision.
    ///
    /// # Errors
    /// As [`crate::evaluate::select::select_stream`], naming the file.
    pub fn select(
        &self,
        inner: &[ScoreTransform],
        outer: &[ScoreTransform],
        alpha: Alpha,
        splits: Splits,
    ) -> Result<crate::evaluate::select::Selection> {
        match self.precision()? {
            Precision::F32 => self.select_in::<f32>(inner, outer, alpha, splits),
            Precision::F64 => self.select_in::<f64>(inner, outer, alpha, splits),
        }
    }

    fn select_in<A: ReadFloat>(
        &self,
        inner: &[ScoreTransform],
        outer: &[ScoreTransform],
        alpha: Alpha,
        splits: Splits,
    ) -> Result<crate::evaluate::select::Selection> {
        let reader = &self.reader;
        let pairs = || reader.items(&self.images, |r, i| Ok((r.image::<A>(i)?, r.mask(i)?)));
        crate::evaluate::select::select_stream(inner, outer, pairs, &self.calibrator, alpha, splits)
            .map_err(|e| reader.blame(e, &self.images))
    }

    /// Warnings about the inputs, before anything is computed: probability
    /// maps (every score of the first selected image in `[0, 1]`) given to
    /// a mask-based transform that predicts the mask as `scores > 0`.
    #[must_use]
    pub fn warnings(&self) -> Vec<Warning> {
        let Some(&first) = self.images.first() else { return Vec::new() };
        if self.scores().is_transformed() {
            return Vec::new();
        }
        let transforms = self.calibrator.transforms();
        if transforms.inner().mask_threshold().is_none() && transforms.outer().mask_threshold().is_none() {
            return Vec::new();
        }
        let Ok((scores, _)) = self.scores().read_raw::<f64>(first) else { return Vec::new() };
        self.calibrator.transforms().warnings_for(&scores)
    }
}
