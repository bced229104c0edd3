//! The pipeline record of a fitted file: how the calibration scores were
//! read, so that `predict` (CLI, Python or Rust) redoes the same steps on
//! new images.
//!
//! A fitted file is the library's serde form of the fitted sets with the
//! record's keys next to them:
//!
//! * `input`: `"scores"` (the recorded transforms are applied to raw
//!   scores), `"probabilities"` (per-class probabilities, nnU-Net's
//!   `.npz`: the foreground channel of the class axis is the image) or
//!   `"transformed"` (calibrated on already transformed inner and outer
//!   scores, used as they are; the transforms are `identity`);
//! * `class_axis`: the axis **of one image** holding two classes: logits
//!   reduced by a two-class softmax before the transforms, or for
//!   `"probabilities"` the axis whose second channel is taken (`null` if
//!   none);
//! * `labels`: the labels of the masks that were the object (`null` for
//!   0/1 masks);
//! * `ignore_label`: the mask value of voxels that were ignored (absent if
//!   none), which `predict --masks` and validation reuse;
//! * `source`: provenance (files, images in the files, images used).

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, Axis};
use serde::{Deserialize, Serialize};

use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
use crate::groups::GroupedSets;
use crate::io::Labels;
use crate::sets::{ConfidenceSets, StructureSets};
use crate::transform::TwoClassSoftmax;

/// What the calibration scores were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Raw scores; the recorded transforms are applied.
    #[default]
    Scores,
    /// Already transformed inner and outer scores, used as they are.
    Transformed,
    /// Per-class probabilities (nnU-Net's `.npz`): the foreground channel
    /// (index 1) of the class axis is the image; no softmax.
    Probabilities,
}

/// Where the calibration data came from.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Source {
    /// The masks file or folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<PathBuf>,
    /// The raw scores file or folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<PathBuf>,
    /// The transformed inner scores file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inner_scores: Option<PathBuf>,
    /// The transformed outer scores file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outer_scores: Option<PathBuf>,
    /// The manifest of per-subject files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    /// The per-image spacing file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spacing_file: Option<PathBuf>,
    /// Images excluded by this index file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exclude: Option<PathBuf>,
    /// Only the images listed in this index file were used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub indices: Option<PathBuf>,
    /// The group labels of a group-conditional calibration (a file of one
    /// label per image; absent for a manifest's group column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<PathBuf>,
    /// Number of images in the input files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_in_files: Option<usize>,
}

/// How the calibration scores were read (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Record {
    /// Raw or transformed calibration scores (default `"scores"`, so that
    /// fitted sets serialized by the library are fitted files too).
    #[serde(default)]
    pub input: InputKind,
    /// Axis of one image holding two classes (logits, or probabilities
    /// for [`InputKind::Probabilities`]).
    #[serde(default)]
    pub class_axis: Option<usize>,
    /// Labels of the masks that are the object.
    #[serde(default, with = "labels_repr")]
    pub labels: Labels,
    /// The mask value of ignored voxels (neither object nor background),
    /// if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignore_label: Option<i64>,
    /// Provenance.
    #[serde(default)]
    pub source: Source,
}

impl Record {
    /// Check that raw scores may be given to sets with this record.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] if the sets were calibrated on already
    /// transformed scores (predict on transformed scores instead).
    pub fn check_raw(&self) -> Result<()> {
        if self.input == InputKind::Transformed {
            return Err(Error::InvalidParameter {
                name: "input",
                value: "transformed".into(),
                reason: "these sets were calibrated on already transformed scores: \
                         predict on transformed inner and outer scores"
                    .into(),
            });
        }
        Ok(())
    }

    /// A raw score image made ready for the recorded transforms: the
    /// recorded class axis reduced by the two-class softmax (for
    /// probabilities: its foreground channel taken).
    ///
    /// # Errors
    /// As [`Record::check_raw`]; a class axis the image does not have.
    pub fn prepare<A: Float>(&self, scores: ArrayD<A>) -> Result<ArrayD<A>> {
        self.check_raw()?;
        match (self.class_axis, self.input) {
            (Some(k), InputKind::Probabilities) => match scores.shape().get(k) {
                Some(2) => Ok(scores.index_axis_move(Axis(k), 1)),
                _ => Err(Error::Options {
                    reason: format!(
                        "these sets were calibrated on two-class probabilities along axis {k} of an image; \
                         an image of shape {:?} has no such axis of length 2",
                        scores.shape()
                    ),
                }),
            },
            (Some(k), _) => TwoClassSoftmax::new(Axis(k)).apply(&scores),
            (None, _) => Ok(scores),
        }
    }

    /// The score files of new images (and their masks) opened as these
    /// sets' calibration files were read: raw scores with the recorded
    /// class axis and of the same kind (probabilities or not, see
    /// [`Record::check_source`]); transformed inner and outer scores as
    /// they are. The CLI's `predict` and `report` open new images through
    /// here; Python's cohort prediction through [`Record::open_subjects`],
    /// the same rule for per-subject files.
    ///
    /// # Errors
    /// As [`super::ScoreSource::open`]; raw scores for sets calibrated on
    /// transformed scores; scores whose layout has no recorded class axis
    /// (the message names the record's field).
    pub fn open(
        &self,
        files: &super::ScoreFiles,
        masks: Option<&str>,
    ) -> Result<(super::ScoreSource, Option<super::MaskSource>)> {
        let transformed = matches!(files, super::ScoreFiles::Transformed { .. });
        if !transformed {
            self.check_raw()?;
        }
        let (source, masks) = super::ScoreSource::open(files, masks, None)?;
        Ok((self.with_recorded_axis(source)?, masks))
    }

    /// Per-subject score files opened as these sets' calibration files were
    /// read: with the recorded class axis, and of the same kind
    /// (probabilities or not, see [`Record::check_source`]).
    ///
    /// # Errors
    /// As [`super::ScoreSource::subjects`] and [`Record::check_source`].
    pub fn open_subjects(
        &self,
        cohort: std::sync::Arc<crate::io::cohort::Cohort>,
    ) -> Result<super::ScoreSource> {
        self.check_raw()?;
        self.with_recorded_axis(super::ScoreSource::subjects(cohort, None)?)
    }

    /// `source` checked against this record and given its class axis.
    fn with_recorded_axis(&self, source: super::ScoreSource) -> Result<super::ScoreSource> {
        self.check_source(&source)?;
        match self.class_axis {
            Some(k) if !source.is_transformed() && source.class_axis() != Some(k) => {
                source.with_class_axis(k).map_err(|e| Error::RecordField {
                    field: "class_axis",
                    reason: format!("{e}; these scores do not have the layout the sets were calibrated on"),
                })
            }
            _ => Ok(source),
        }
    }

    /// How to read the true masks of new images checked against these
    /// sets: `labels` as the object, and `ignore` (else the recorded ignore
    /// label) as ignored voxels.
    ///
    /// # Errors
    /// As [`Coding::new`](crate::mask::Coding::new).
    pub fn coding(&self, labels: Labels, ignore: Option<i64>) -> Result<crate::mask::Coding> {
        crate::mask::Coding::new(labels, ignore.or(self.ignore_label))
    }

    /// Check that opened score files are of the kind these sets were
    /// calibrated on: probabilities (nnU-Net's `.npz`) for sets calibrated
    /// on probabilities, logits or scores otherwise — the two are on
    /// different scales, so the thresholds of one do not fit the other.
    ///
    /// # Errors
    /// [`Error::Options`] naming both kinds.
    pub fn check_source(&self, source: &super::ScoreSource) -> Result<()> {
        if source.is_transformed() || (self.input == InputKind::Probabilities) == source.holds_probabilities()
        {
            return Ok(());
        }
        let (was, is) = if source.holds_probabilities() {
            ("logits or scores", "nnU-Net's probabilities (.npz)")
        } else {
            ("nnU-Net's probabilities (.npz)", "logits or scores")
        };
        Err(Error::Options {
            reason: format!(
                "these sets were calibrated on {was}, the new scores are {is}: \
                 predict on the same kind of files as the calibration"
            ),
        })
    }
}

/// `Labels` as JSON: `null` for binary masks, else the list of labels.
mod labels_repr {
    use crate::io::Labels;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(l: &Labels, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Labels::Select(v) => v.serialize(s),
            Labels::Binary => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        match Option::<Vec<i64>>::deserialize(d)? {
            None => Ok(Labels::Binary),
            Some(v) => Labels::select(v).map_err(de::Error::custom),
        }
    }
}

/// Fitted sets and their pipeline record: the file `calibrate` writes and
/// `predict` reads (for one structure `S` = `ConfidenceSets`, for several
/// `StructureSets`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted<S> {
    /// The fitted sets.
    #[serde(flatten)]
    pub sets: S,
    /// How the scores were read.
    #[serde(flatten)]
    pub record: Record,
    /// The calibration statistics the conformal thresholds were fitted on
    /// (`tau_i`, `gamma_i` per image; key `statistics`), kept so that a
    /// report can draw their histograms ([`crate::html`]). Optional: files
    /// written before it, fits by risk control or of several structures,
    /// and calibrations of more than [`MAX_STORED_STATISTICS`] images have
    /// none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistics: Option<crate::calibrate::Calibration>,
}

/// The most images whose statistics a fitted file keeps (about 60 bytes
/// each: 6 MB, well under [`MAX_FITTED_FILE_BYTES`]).
pub const MAX_STORED_STATISTICS: usize = 100_000;

impl<S> Fitted<S> {
    /// Fitted sets and their record, without statistics.
    pub fn new(sets: S, record: Record) -> Self {
        Fitted { sets, record, statistics: None }
    }

    /// Keep `calibration`'s statistics in the file (dropped, with the
    /// provenance they carry, beyond [`MAX_STORED_STATISTICS`] images).
    #[must_use]
    pub fn with_statistics(mut self, calibration: &crate::calibrate::Calibration) -> Self {
        self.statistics = (calibration.len() <= MAX_STORED_STATISTICS).then(|| calibration.clone());
        self
    }
}

/// The largest fitted file read (a fitted file is a few kilobytes; the
/// bound keeps a wrong path, e.g. a device, from being read whole).
pub const MAX_FITTED_FILE_BYTES: u64 = 16 << 20;

impl<S: Serialize + for<'de> Deserialize<'de>> Fitted<S> {
    /// Parse the text of a fitted file (a UTF-8 byte-order mark is allowed).
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] with the JSON error on one line.
    pub fn parse(text: &str) -> Result<Self> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let invalid = |e: serde_json::Error| Error::InvalidParameter {
            name: "fitted file",
            value: "JSON".into(),
            reason: format!("not a valid confseg calibration file: {e}"),
        };
        let fitted: Self = serde_json::from_str(text).map_err(invalid)?;
        // A file `calibrate` wrote (it records the images in its files) has
        // every key the library writes; one that is missing was removed by
        // hand, and its default (`ndim` unchecked, 0/1 masks, no class axis)
        // would be taken silently.
        if fitted.record.source.images_in_files.is_some() {
            let (Ok(serde_json::Value::Object(written)), Ok(serde_json::Value::Object(read))) =
                (serde_json::to_value(&fitted), serde_json::from_str::<serde_json::Value>(text))
            else {
                return Ok(fitted);
            };
            if let Some(key) = written.keys().find(|k| !read.contains_key(*k)) {
                return Err(Error::InvalidParameter {
                    name: "fitted file",
                    value: key.clone(),
                    reason: format!(
                        "field {key} is missing from a file confseg calibrate wrote (it was edited); \
                         calibrate again"
                    ),
                });
            }
        }
        Ok(fitted)
    }

    /// Read a fitted file: a regular file of at most
    /// [`MAX_FITTED_FILE_BYTES`].
    ///
    /// # Errors
    /// As [`read_text`] and [`Fitted::parse`], naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = read_text(path, MAX_FITTED_FILE_BYTES)?;
        Self::parse(&text).map_err(|e| Error::InFile { path: path.to_path_buf(), error: Box::new(e) })
    }

    /// The JSON text (pretty-printed, with a final newline).
    ///
    /// # Errors
    /// Serialization failure (not expected for valid sets).
    pub fn to_json(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self).map_err(|e| Error::InvalidParameter {
            name: "fitted sets",
            value: "JSON".into(),
            reason: e.to_string(),
        })?;
        s.push('\n');
        Ok(s)
    }

    /// Write the file atomically (all or nothing).
    ///
    /// # Errors
    /// As [`crate::io::write_atomic`].
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        crate::io::write_atomic(path, |w| w.write_all(json.as_bytes()))
    }
}

/// A fitted file of any kind: one structure's sets, several structures'
/// (the JSON has a `structures` key) or sets per group (a `groups` key).
#[derive(Debug, Clone, PartialEq)]
pub enum FittedFile {
    /// Sets of one structure (`calibrate` without structures).
    Sets(Box<Fitted<ConfidenceSets>>),
    /// Sets of several structures of a label map.
    Structures(Box<Fitted<StructureSets>>),
    /// Sets per group or stratum ([`GroupedSets`]).
    Groups(Box<Fitted<GroupedSets>>),
}

impl FittedFile {
    /// Read a fitted file of any kind: a regular file of at most
    /// [`MAX_FITTED_FILE_BYTES`].
    ///
    /// # Errors
    /// As [`read_text`] and [`Fitted::parse`], naming the file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = read_text(path, MAX_FITTED_FILE_BYTES)?;
        let in_file = |e| Error::InFile { path: path.to_path_buf(), error: Box::new(e) };
        if is_structures_file(&text) {
            Fitted::parse(&text).map(|f| FittedFile::Structures(Box::new(f))).map_err(in_file)
        } else if is_groups_file(&text) {
            Fitted::parse(&text).map(|f| FittedFile::Groups(Box::new(f))).map_err(in_file)
        } else {
            Fitted::parse(&text).map(|f| FittedFile::Sets(Box::new(f))).map_err(in_file)
        }
    }
}

/// Whether the JSON text is a fitted file of sets per group
/// ([`crate::groups::GroupedSets`]).
#[must_use]
pub fn is_groups_file(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text.strip_prefix('\u{feff}').unwrap_or(text))
        .is_ok_and(|v| v.get("groups").is_some() && v.get("small_groups").is_some())
}

/// Whether the JSON text is a fitted file of several structures.
#[must_use]
pub fn is_structures_file(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text.strip_prefix('\u{feff}').unwrap_or(text))
        .is_ok_and(|v| v.get("structures").is_some())
}

/// The UTF-8 text of a regular file of at most `max_bytes` (a leading
/// byte-order mark removed).
///
/// # Errors
/// [`Error::File`] if the path is not a regular file (a folder, a device
/// such as `/dev/zero`, a pipe), is larger than `max_bytes`, cannot be
/// read, or is not UTF-8.
pub fn read_text(path: &Path, max_bytes: u64) -> Result<String> {
    use std::io::Read;
    let file_error = |problem| Error::File { path: path.to_path_buf(), problem };
    let meta = std::fs::metadata(path)
        .map_err(|e| file_error(FileProblem::Io { kind: e.kind(), message: e.to_string() }))?;
    if !meta.is_file() {
        return Err(file_error(FileProblem::NotRegular));
    }
    let file = std::fs::File::open(path)
        .map_err(|e| file_error(FileProblem::Io { kind: e.kind(), message: e.to_string() }))?;
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| file_error(FileProblem::Io { kind: e.kind(), message: e.to_string() }))?;
    if bytes.len() as u64 > max_bytes {
        return Err(file_error(FileProblem::TooLarge { limit: max_bytes }));
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|_| file_error(FileProblem::NotUtf8))
}

impl super::Request {
    /// Where the data of this request comes from, for the record.
    #[must_use]
    pub fn provenance(&self, images_in_files: usize) -> Source {
        use super::ScoreFiles;
        let mut source = Source {
            masks: self.masks.as_ref().map(PathBuf::from),
            spacing_file: self.spacing.per_image.clone(),
            exclude: self.selection.exclude.clone(),
            indices: self.selection.indices.clone(),
            images_in_files: Some(images_in_files),
            ..Source::default()
        };
        match &self.scores {
            ScoreFiles::Stack(p) => source.scores = Some(p.clone()),
            ScoreFiles::Subjects { scores, .. } => source.scores = Some(PathBuf::from(scores)),
            ScoreFiles::Manifest(p) => source.manifest = Some(p.clone()),
            ScoreFiles::Transformed { inner, outer } => {
                source.inner_scores = Some(inner.clone());
                source.outer_scores = Some(outer.clone());
            }
        }
        source
    }
}

impl super::Inputs {
    /// The pipeline record of these inputs, opened from `request`.
    #[must_use]
    pub fn record(&self, request: &super::Request) -> Record {
        Record { source: request.provenance(self.scores().n_images()), ..self.reading() }
    }

    /// How these inputs read their scores and masks (the record without
    /// provenance, e.g. for inputs opened from a cohort).
    #[must_use]
    pub fn reading(&self) -> Record {
        Record {
            input: if self.scores().is_transformed() {
                InputKind::Transformed
            } else if self.scores().holds_probabilities() {
                InputKind::Probabilities
            } else {
                InputKind::Scores
            },
            class_axis: self.scores().class_axis(),
            labels: self.labels(),
            ignore_label: self.ignore_label(),
            source: Source::default(),
        }
    }
}

impl Record {
    /// Check that scores given to sets with this record are ready for the
    /// recorded transforms as they are: raw scores, with no class axis
    /// left to reduce (callers that read files apply it, see
    /// [`Record::prepare`]).
    ///
    /// # Errors
    /// As [`Record::check_raw`]; [`Error::Options`] naming the class axis
    /// and the softmax to apply.
    pub fn check_prepared(&self) -> Result<()> {
        self.check_raw()?;
        match self.class_axis {
            None => Ok(()),
            Some(k) if self.input == InputKind::Probabilities => Err(Error::Options {
                reason: format!(
                    "these sets were calibrated on two-class probabilities along axis {k} of an image: \
                     take the foreground channel (index 1 of axis {k} of an image) first"
                ),
            }),
            Some(k) => Err(Error::Options {
                reason: format!(
                    "these sets were calibrated on two-class logits along axis {k} of an image: reduce them \
                     with the two-class softmax first (axis {k} of an image, axis {} of a batch-first stack)",
                    k + 1
                ),
            }),
        }
    }
}
