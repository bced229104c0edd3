//! The calibration JSON file that `calibrate` writes and `predict` reads.
//!
//! It is the library's serde form of
//! `ConfidenceSets<ScoreTransform, ScoreTransform>` (`confseg_version`,
//! `n`, `mode`, `alpha`, `combination`, `spacing`, `inner: {alpha,
//! threshold, rank, transform}`, `outer: {...}`, infinite thresholds as
//! `"inf"`/`"-inf"`), flattened, plus what the CLI needs to redo the same
//! pipeline on new images:
//!
//! * `input`: `"scores"` (transforms are applied to `--scores`) or
//!   `"transformed"` (calibrated on `--inner-scores`/`--outer-scores` given
//!   as they are; the transforms are recorded as `identity`);
//! * `class_axis`: the axis of the score stack holding two-class logits,
//!   reduced by a two-class softmax before the transforms (`null` if none);
//! * `labels`: the labels of the masks that were the object (`null` for
//!   0/1 masks), reused by `validate`;
//! * `source`: provenance (files, images in the file, images used).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use confseg::io::Labels;
use confseg::{ConfidenceSets, ScoreTransform};
use serde::{Deserialize, Serialize};

/// Fitted sets as the CLI uses them.
pub type Sets = ConfidenceSets<ScoreTransform, ScoreTransform>;

/// What the calibration scores were.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputKind {
    /// Raw scores; the recorded transforms are applied.
    #[default]
    Scores,
    /// Already transformed inner and outer scores, used as they are.
    Transformed,
}

/// Where the calibration data came from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Source {
    /// The masks file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub masks: Option<PathBuf>,
    /// The raw scores file.
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
    /// Number of images in the input stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub images_in_files: Option<usize>,
}

/// The calibration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CalibrationFile {
    /// Transforms, thresholds and provenance from the library.
    #[serde(flatten)]
    pub sets: Sets,
    /// Raw or transformed calibration scores (default `"scores"`, so that
    /// fitted sets serialized by the library are calibration files too).
    #[serde(default)]
    pub input: InputKind,
    /// Axis of the score stack (0 = images) holding two-class logits.
    #[serde(default)]
    pub class_axis: Option<usize>,
    /// Labels of the masks that are the object.
    #[serde(default, with = "labels_repr")]
    pub labels: Labels,
    /// Provenance.
    #[serde(default)]
    pub source: Source,
}

/// `Labels` as JSON: `null` for binary masks, else the list of labels.
mod labels_repr {
    use confseg::io::Labels;
    use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(l: &Labels, s: S) -> Result<S::Ok, S::Error> {
        match l {
            Labels::Select(v) => v.serialize(s),
            _ => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        match Option::<Vec<i64>>::deserialize(d)? {
            None => Ok(Labels::Binary),
            Some(v) => Labels::select(v).map_err(de::Error::custom),
        }
    }
}

impl CalibrationFile {
    /// Parse the text of a calibration file read from `path`.
    ///
    /// # Errors
    /// The text is not a calibration file (the message names the file).
    pub fn parse(path: &Path, text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a valid confseg calibration file: {}",
                path.display(),
                confseg_one_line(&e.to_string())
            )
        })
    }

    /// The JSON text (pretty-printed, with a final newline).
    ///
    /// # Errors
    /// Serialization failure (not expected for valid sets).
    pub fn to_json(&self) -> Result<String> {
        let mut s = serde_json::to_string_pretty(self).context("cannot serialize the calibration")?;
        s.push('\n');
        Ok(s)
    }

    /// Write the file atomically.
    ///
    /// # Errors
    /// As [`confseg::io::write_atomic`].
    pub fn write(&self, path: &Path) -> Result<()> {
        let json = self.to_json()?;
        confseg::io::write_atomic(path, |w| w.write_all(json.as_bytes()))?;
        Ok(())
    }
}

/// An error message on one line.
fn confseg_one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// The text of a calibration file, without a UTF-8 byte-order mark (some
/// editors add one; it is not part of the JSON).
///
/// # Errors
/// The file cannot be read or is not UTF-8.
pub fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("{}", path.display()))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!("{}: not a confseg calibration file (not UTF-8: {e})", path.display())
    })?;
    Ok(text.to_owned())
}
