//! The command-line options that name input files, turned into the
//! library's [`Request`] (and [`pipeline::ScoreFiles`]): the data path
//! itself (sources, class axis, spacing precedence, streaming, warnings)
//! is the library's `pipeline`.
//!
//! * [`ScoreFiles`]: `--scores`, or `--inner-scores`/`--outer-scores`, or `--manifest`;
//! * [`TransformOptions`]: `--mask-threshold`, `--spacing`, `--spacing-file`, `--class-axis`;
//! * [`MaskArgs`]: `--masks` and `--label`/`--labels` for label maps;
//! * [`Selection`]: `--exclude IDX.npy`, `--indices IDX.npy`;
//! * [`CalibrationInputs`]: all of the above plus `--inner`/`--outer`,
//!   flattened into `calibrate` and `validate`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use confseg::io::cohort::Pairing;
use confseg::io::Labels;
use confseg::mask::Structure;
use confseg::pipeline::{self, Inputs, MaskSource, Request, ScoreSource, SpacingSource};
use confseg::tolerance::{Tolerance, Tolerances};
use confseg::{ScoreTransform, Side, Spacing};

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

/// Options of the score transforms.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransformOptions {
    /// Predicted mask = scores > T, for mask-based transforms (distance, box, morphological); default 0.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub mask_threshold: Option<f64>,
    #[command(flatten)]
    pub spacing: SpacingArgs,
    /// Axis of one image (0 = its first axis; negative counts from the end, -1 = channel-last) holding
    /// two-class logits, reduced by a softmax to the foreground probability.
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub class_axis: Option<i64>,
}

impl TransformOptions {
    /// `t` with `--mask-threshold` applied (if given).
    ///
    /// # Errors
    /// A threshold that is not finite.
    pub fn apply(&self, t: ScoreTransform) -> Result<ScoreTransform> {
        Ok(match self.mask_threshold {
            Some(x) => t.with_mask_threshold(x).map_err(|e| anyhow::anyhow!("--mask-threshold: {e}"))?,
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
        Ok(pipeline::Selection::from(self.clone()).resolve(n)?)
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
    /// Voxels whose mask value is K (e.g. 255: not annotated) are ignored: they count neither in the
    /// statistics nor in coverage, losses or set sizes. Must not be one of the object's labels.
    #[arg(long, value_name = "K", allow_hyphen_values = true)]
    pub ignore_label: Option<i64>,
}

impl MaskArgs {
    /// The label selection (binary 0/1 masks unless --label/--labels).
    pub fn selection(&self) -> Labels {
        self.label.clone().or_else(|| self.labels.clone()).unwrap_or_default()
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
    /// Inner transform f_I for --scores: identity, sigmoid, distance[:metric], gaussian:FWHM, box,
    /// morphological[:footprint=face|edge|full|ball:radius=R|FILE.npy], ...
    #[arg(long, value_name = "NAME")]
    pub inner: Option<String>,
    /// Outer transform f_O for --scores (same names as --inner).
    #[arg(long, value_name = "NAME")]
    pub outer: Option<String>,
    #[command(flatten)]
    pub options: TransformOptions,
    /// Tolerance of the inner set: at most this share of the inner set (0.05), count (5vox) or volume
    /// (12.5mm3) may lie outside the truth. Default 0: inner ⊆ truth.
    #[arg(long, value_name = "T", default_value = "0")]
    pub inner_tolerance: Tolerance,
    /// Tolerance of the outer set: at most this share of the object (0.01: recall >= 0.99), count (5vox)
    /// or volume (12.5mm3) may lie outside the outer set. Default 0: truth ⊆ outer.
    #[arg(long, value_name = "T", default_value = "0")]
    pub outer_tolerance: Tolerance,
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

impl StructureArgs {
    /// Whether several structures of a label map were asked for.
    pub fn any(&self) -> bool {
        !self.structures.is_empty()
    }
}

impl ScoreFiles {
    /// The library's name for these files: raw scores (a stack or
    /// per-subject files), transformed stacks, or a manifest.
    ///
    /// # Errors
    /// A usage error when no scores or two kinds of scores are given.
    pub fn request(&self) -> Result<pipeline::ScoreFiles> {
        let sub = &self.subjects;
        let pairing = Pairing::new(sub.scores_suffix.clone(), sub.masks_suffix.clone());
        Ok(match (&sub.manifest, &self.scores, &self.inner_scores, &self.outer_scores) {
            (Some(_), Some(_), _, _) | (Some(_), _, Some(_), _) => {
                usage!("give --manifest or --scores, not both")
            }
            (Some(m), None, None, None) => pipeline::ScoreFiles::Manifest(m.clone()),
            (None, Some(path), _, _) => pipeline::ScoreFiles::raw(path, pairing),
            (None, None, Some(inner), Some(outer)) => {
                pipeline::ScoreFiles::Transformed { inner: inner.clone(), outer: outer.clone() }
            }
            _ => usage!("give --scores, --inner-scores and --outer-scores, or --manifest"),
        })
    }

    /// Open the score files (and masks), headers only.
    ///
    /// # Errors
    /// As [`ScoreFiles::request`] and [`ScoreSource::open`].
    pub fn open(
        &self,
        masks: Option<&Path>,
        class_axis: Option<i64>,
    ) -> Result<(ScoreSource, Option<MaskSource>)> {
        let masks = masks.map(|m| m.to_string_lossy().into_owned());
        Ok(ScoreSource::open(&self.request()?, masks.as_deref(), class_axis)?)
    }

    /// Open the score files of new images (and masks) as the fitted file
    /// `calibration` with pipeline record `record` read its own
    /// ([`pipeline::record::Record::open`]); errors name the file.
    ///
    /// # Errors
    /// Raw scores for sets fitted on transformed scores (a usage error);
    /// as [`pipeline::record::Record::open`].
    pub fn open_like(
        &self,
        record: &pipeline::record::Record,
        calibration: &Path,
        masks: Option<&Path>,
    ) -> Result<(ScoreSource, Option<MaskSource>)> {
        if record.input == pipeline::record::InputKind::Transformed && self.inner_scores.is_none() {
            usage!(
                "{} was calibrated on transformed scores: give --inner-scores and --outer-scores",
                calibration.display()
            );
        }
        let masks = masks.map(|m| m.to_string_lossy().into_owned());
        record.open(&self.request()?, masks.as_deref()).with_context(|| calibration.display().to_string())
    }
}

impl SpacingArgs {
    /// The library's spacing source.
    pub fn source(&self) -> SpacingSource {
        SpacingSource { cohort: self.spacing.clone(), per_image: self.spacing_file.clone() }
    }
}

impl CalibrationInputs {
    /// The library request these options describe.
    ///
    /// # Errors
    /// Usage errors; unknown transform names.
    pub fn request(&self) -> Result<Request> {
        if self.masks.masks.is_none() && self.files.subjects.manifest.is_none() {
            usage!("give --masks (or a --manifest with a mask column)");
        }
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
        let parse = |name: &Option<String>, side| -> Result<ScoreTransform> {
            Ok(match name {
                Some(n) => ScoreTransform::parse_for(side, n)?,
                None => ScoreTransform::Identity,
            })
        };
        let mut request = Request::new(
            self.files.request()?,
            self.masks.masks.as_ref().map(|m| m.to_string_lossy().into_owned()),
        );
        request.labels = self.masks.selection();
        request.ignore_label = self.masks.ignore_label;
        request.transforms = (parse(&self.inner, Side::Inner)?, parse(&self.outer, Side::Outer)?);
        request.mask_threshold = self.options.mask_threshold;
        request.class_axis = self.options.class_axis;
        request.spacing = self.options.spacing.source();
        request.selection = self.selection.clone().into();
        request.tolerances = self.tolerances();
        Ok(request)
    }

    /// Both sides' tolerances.
    pub fn tolerances(&self) -> Tolerances {
        Tolerances::new(self.inner_tolerance, self.outer_tolerance)
    }

    /// Open and cross-check everything (headers only), with a progress bar
    /// labelled `what` that counts images as they are read.
    ///
    /// # Errors
    /// As [`CalibrationInputs::request`] and [`Request::open`].
    pub fn open(&self, what: &str) -> Result<(Inputs, ProgressBar)> {
        let inputs = self.request()?.open()?;
        let bar = report::progress(what, inputs.images.len(), inputs.scores().voxels_per_image());
        Ok((inputs.with_tick(report::tick(&bar)), bar))
    }
}

impl From<Selection> for pipeline::Selection {
    fn from(s: Selection) -> Self {
        pipeline::Selection { indices: s.indices, exclude: s.exclude }
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
