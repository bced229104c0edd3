//! Several structures of one label map, read from files: where the
//! structures' scores sit in the network's output ([`StructureAxis`]) and a
//! [`StructureRequest`] opened once into [`StructureInputs`] that calibrate
//! every selected image in the files' precision — the one path of the CLI's
//! `--structure` commands and of Python's `StructureCalibrator`.
//!
//! ```no_run
//! use confseg::mask::Structure;
//! use confseg::pipeline::structures::{StructureAxis, StructureRequest};
//! use confseg::pipeline::{Request, ScoreFiles};
//! use confseg::levels::JointMode;
//! use confseg::Alpha;
//! use std::path::Path;
//!
//! // softmax outputs (N, 4, H, W) over the classes 0, 1, 2, 4 and their label maps
//! let request = StructureRequest {
//!     request: Request::new(ScoreFiles::Stack(Path::new("outputs.npy").into()), Some("labels.npy".into())),
//!     structures: vec!["WT=1,2,4".parse::<Structure>()?, "ET=4".parse()?],
//!     axis: StructureAxis::new(Some(0), Some(vec![0, 1, 2, 4]), None)?,
//! };
//! let inputs = request.open()?;
//! let calibration = inputs.calibrate()?;
//! // P(for every structure: inner ⊆ truth ⊆ outer) >= 0.9
//! let mode = JointMode::max(Alpha::new(0.1)?, inputs.calibrator.structures().len());
//! let sets = inputs.calibrator.fit(&calibration, mode)?;
//! # let _ = sets;
//! # Ok::<(), confseg::Error>(())
//! ```

use std::sync::Arc;

use ndarray::ArrayD;

use super::inputs::Request;
use super::source::{resolve_axis, MaskSource, Reader, ScoreFiles, Tick};
use crate::calibrate::{StructureCalibration, StructureCalibrator};
use crate::error::{Error, Result};
use crate::io::{Labels, Precision, ReadFloat};
use crate::mask::Structure;
use crate::transform::{ScoreTransform, StructureScores};
use crate::{Calibrator, Spacing};

/// Where the structures' scores sit in each image's output (the axis
/// counts one image's own axes, with the class axis; negative from the
/// end).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StructureAxis {
    /// Logits of classes along `axis`, reduced by a softmax (or, for
    /// nnU-Net's `.npz`, their probabilities); a structure's score is the
    /// sum of its classes' probabilities. `labels` names each class's label
    /// in channel order; `None` means `0, 1, ..., C - 1`, which needs the
    /// output's shape.
    Classes {
        /// The class axis.
        axis: i64,
        /// The label of each class channel.
        labels: Option<Vec<i64>>,
    },
    /// One score map per structure along `axis`, in the structures' order.
    Channels {
        /// The structure axis.
        axis: i64,
    },
}

fn options(reason: impl Into<String>) -> Error {
    Error::Options { reason: reason.into() }
}

impl StructureAxis {
    /// The layout given by the optional `class_axis` (with `class_labels`)
    /// or `structure_axis`, exactly one of them.
    ///
    /// # Errors
    /// [`Error::Options`] for both axes, neither, or class labels without a
    /// class axis.
    pub fn new(
        class_axis: Option<i64>,
        class_labels: Option<Vec<i64>>,
        structure_axis: Option<i64>,
    ) -> Result<StructureAxis> {
        match (class_axis, structure_axis) {
            (Some(axis), None) => Ok(StructureAxis::Classes { axis, labels: class_labels }),
            (None, Some(_)) if class_labels.is_some() => {
                Err(options("class_labels apply to class_axis only"))
            }
            (None, Some(axis)) => Ok(StructureAxis::Channels { axis }),
            (Some(_), Some(_)) => Err(options("give class_axis or structure_axis, not both")),
            (None, None) => Err(options(
                "give class_axis (a softmax over classes) or structure_axis (one score map per structure)",
            )),
        }
    }

    /// The structure scores for outputs of `output_ndim` axes per image
    /// (`None`: not known yet, then the axis must count from the start),
    /// where `classes(axis)` is the length of an axis if known;
    /// `probabilities` for nnU-Net's probabilities (summed, no softmax).
    ///
    /// # Errors
    /// [`Error::Options`]: an axis outside the output, a negative axis with
    /// no known dimension, class labels that do not match the class axis's
    /// length, or no class labels and no known length.
    pub fn scores(
        &self,
        output_ndim: Option<usize>,
        classes: impl Fn(usize) -> Option<usize>,
        probabilities: bool,
    ) -> Result<StructureScores> {
        let resolve = |k: i64, name: &'static str| match output_ndim {
            Some(nd) => resolve_axis(k, nd, name),
            None => usize::try_from(k).map_err(|_| {
                options(format!("a negative {name} needs the dimension of the images to count from the end"))
            }),
        };
        match self {
            StructureAxis::Channels { axis } => {
                Ok(StructureScores::Channels { axis: resolve(*axis, "structure_axis")? })
            }
            StructureAxis::Classes { axis, labels } => {
                let axis = resolve(*axis, "class_axis")?;
                let class_labels = match (labels, classes(axis)) {
                    (Some(l), Some(c)) if l.len() != c => {
                        return Err(options(format!(
                            "class_labels name {} classes, the class axis has {c}",
                            l.len()
                        )))
                    }
                    (Some(l), _) => l.clone(),
                    (None, Some(c)) => (0..i64::try_from(c).unwrap_or(i64::MAX)).collect(),
                    (None, None) => {
                        return Err(options(
                            "class_axis needs class_labels: the label of each class, in channel order (e.g. [0, 1, 2, 4])",
                        ))
                    }
                };
                Ok(if probabilities {
                    StructureScores::Probabilities { axis, class_labels }
                } else {
                    StructureScores::Softmax { axis, class_labels }
                })
            }
        }
    }
}

/// A calibration of several structures from files: the files, transforms,
/// spacing, selection, tolerances and ignore label of a [`Request`] (its
/// `labels` and `class_axis` are for one structure and must be left at
/// their defaults; its masks are label maps), the structures and where
/// their scores are.
#[derive(Debug, Clone)]
pub struct StructureRequest {
    /// Files and options shared with one structure.
    pub request: Request,
    /// The structures, each a set of labels of the label maps.
    pub structures: Vec<Structure>,
    /// Where the structures' scores sit in the output.
    pub axis: StructureAxis,
}

impl StructureRequest {
    /// Open and cross-check everything (headers only).
    ///
    /// # Errors
    /// Transformed scores or a one-structure option; as
    /// [`ScoreSource::open`](super::ScoreSource::open),
    /// [`StructureAxis::scores`] and
    /// [`StructureCalibrator::new`]; label maps whose shape is not the
    /// scores' without their class axis; a spacing that does not fit.
    pub fn open(&self) -> Result<StructureInputs> {
        let r = &self.request;
        if matches!(r.scores, ScoreFiles::Transformed { .. }) {
            return Err(options("several structures need the network's output, not transformed scores"));
        }
        if r.class_axis.is_some() || r.labels != Labels::Binary {
            return Err(options(
                "with several structures, the class axis and the labels are the structures' own (StructureAxis, Structure)",
            ));
        }
        if r.masks.is_none() && !matches!(r.scores, ScoreFiles::Manifest(_)) {
            return Err(options("several structures need their label maps (masks)"));
        }
        let (scores, masks) =
            super::ScoreSource::open(&r.scores, Some(r.masks.as_deref().unwrap_or("")), None)?;
        let Some(masks) = masks else {
            return Err(options("several structures need their label maps (masks)"));
        };
        let first: Vec<usize> = match (scores.cohort(), scores.stack_shape()) {
            (_, Some(s)) => s,
            (Some(cohort), None) => cohort.info(0)?.shape,
            _ => Vec::new(),
        };
        let structure_scores =
            self.axis.scores(Some(first.len()), |a| first.get(a).copied(), scores.holds_probabilities())?;
        let axis = structure_scores.axis();
        if let (MaskSource::Stack(m), Some(image)) = (&masks, scores.stack_shape()) {
            let mut want = vec![scores.n_images()];
            want.extend(image.iter().enumerate().filter(|&(a, _)| a != axis).map(|(_, &n)| n));
            if m.info().shape != want {
                return Err(Error::InvalidParameter {
                    name: "inputs",
                    value: "shapes".into(),
                    reason: format!(
                        "label maps {} have shape {:?}; the scores {} without their class axis have {:?}",
                        m.path().display(),
                        m.info().shape,
                        scores.describe(),
                        want
                    ),
                });
            }
        }
        let ndim = first.len().saturating_sub(1);
        let cohort_spacing = r.spacing.cohort.clone().unwrap_or_default();
        cohort_spacing.for_ndim(ndim)?;
        let spacings = r.spacing.per_image(scores.n_images(), ndim)?;
        let with_threshold = |t: &ScoreTransform| match r.mask_threshold {
            Some(x) => t.clone().with_mask_threshold(x),
            None => Ok(t.clone()),
        };
        let single = Calibrator::new(with_threshold(&r.transforms.0)?, with_threshold(&r.transforms.1)?)
            .with_spacing(cohort_spacing)
            .with_tolerances(r.tolerances);
        let calibrator = StructureCalibrator::new(single, self.structures.clone(), structure_scores)?
            .with_ignore_label(r.ignore_label)?;
        let images = r.selection.resolve(scores.n_images())?;
        let precision = scores.precision()?;
        let reader = Reader {
            spacings: spacings.map(Arc::from),
            cohort_spacing: r.spacing.cohort.is_some(),
            masks: Some((masks, Labels::Binary.into())),
            ..Reader::new(scores)
        };
        Ok(StructureInputs { reader: Arc::new(reader), calibrator, images, axis, precision })
    }
}

/// Opened inputs of a calibration of several structures.
#[derive(Debug)]
pub struct StructureInputs {
    /// The files, read on worker threads.
    pub reader: Arc<Reader>,
    /// The calibrator of the structures.
    pub calibrator: StructureCalibrator<ScoreTransform, ScoreTransform>,
    /// The selected images, in order.
    pub images: Vec<usize>,
    /// The class (or structure) axis of one image's output.
    axis: usize,
    precision: Precision,
}

impl StructureInputs {
    /// The same inputs calling `tick` after each image is read.
    #[must_use]
    pub fn with_tick(mut self, tick: Tick) -> StructureInputs {
        Arc::make_mut(&mut self.reader).tick = Some(tick);
        self
    }

    /// Every selected image's statistics, in the files' precision.
    ///
    /// # Errors
    /// As [`StructureCalibrator::calibrate_stream`], naming the file.
    pub fn calibrate(&self) -> Result<StructureCalibration> {
        match self.precision {
            Precision::F32 => self.statistics::<f32>(),
            Precision::F64 => self.statistics::<f64>(),
        }
    }

    fn statistics<A: ReadFloat>(&self) -> Result<StructureCalibration> {
        let axis = self.axis;
        let items = self.reader.items(&self.images, move |r, i| {
            let (a, sp) = read_output::<A>(r, axis, i)?;
            Ok((a, sp, r.label_map(i)?))
        });
        self.calibrator.calibrate_stream(items).map_err(|e| self.reader.blame(e, &self.images))
    }
}

/// One image's output (with its class axis `axis`) and its own spacing
/// (of the spatial axes): a per-image spacing, else (unless one cohort
/// spacing overrides the files) its header's without the class axis.
///
/// # Errors
/// As [`ScoreSource::read_raw`](super::ScoreSource::read_raw).
pub fn read_output<A: ReadFloat>(r: &Reader, axis: usize, i: usize) -> Result<(ArrayD<A>, Option<Spacing>)> {
    let (a, geometry) = r.scores.read_raw::<A>(i)?;
    let spacing = match (&r.spacings, geometry) {
        (Some(sp), _) => Some(sp[i].clone()),
        (None, Some(g)) if !r.cohort_spacing => {
            // a header spacing counts the class axis too (e.g. a 4-D NIfTI): drop it
            match g.spacing().as_slice().map(<[f64]>::len) {
                Some(len) if len == a.ndim() => Some(g.without_axis(axis)?.spacing().clone()),
                Some(len) if len + 1 == a.ndim() => Some(g.spacing().clone()),
                _ => None,
            }
        }
        _ => None,
    };
    Ok((a, spacing))
}
