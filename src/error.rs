//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Result alias with the crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with user input.
///
/// Variants carry the facts needed to find the problem: the image index (when
/// known) and the voxel index of a bad value, both shapes of a mismatch.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum Error {
    /// A miscoverage level outside the open interval (0, 1).
    #[error("{name} = {} is outside (0, 1)", num(*value))]
    InvalidAlpha {
        /// Which level (`"alpha"`, `"alpha_inner"`, ...).
        name: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// Bonferroni levels whose sum exceeds the joint level.
    #[error("alpha_inner + alpha_outer = {} + {} exceeds the joint alpha {}", num(*inner), num(*outer), num(*alpha))]
    SplitExceedsAlpha {
        /// The joint level.
        alpha: f64,
        /// The inner level.
        inner: f64,
        /// The outer level.
        outer: f64,
    },
    /// A score image contains NaN.
    #[error("NaN in {what}{} at voxel {index:?}", image_suffix(*.image))]
    NanScore {
        /// Which input (`"scores"`, `"inner scores"`, ...).
        what: &'static str,
        /// Index of the image in the calibration or prediction stream, when known.
        image: Option<usize>,
        /// Multi-index of the first NaN voxel.
        index: Vec<usize>,
    },
    /// A mask value other than 0 or 1.
    #[error(
        "mask{} holds {} at voxel {index:?}; masks must be 0/1{}",
        image_suffix(*.image),
        num(*value),
        label_hint(*value)
    )]
    NonBinaryMask {
        /// Index of the image, when known.
        image: Option<usize>,
        /// Multi-index of the first offending voxel.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
    },
    /// A label map value that is not an integer label.
    #[error("label map{} holds {} at voxel {index:?}; labels must be integers", image_suffix(*.image), num(*value))]
    InvalidLabel {
        /// Index of the image, when known.
        image: Option<usize>,
        /// Multi-index of the first offending voxel.
        index: Vec<usize>,
        /// The offending value.
        value: f64,
    },
    /// An image with no voxels (a zero-length axis): it has no statistics
    /// and no sets.
    #[error("image{} of shape {shape:?} has no voxels", image.map_or_else(String::new, |i| format!(" {i}")))]
    EmptyImage {
        /// Index of the image, when known.
        image: Option<usize>,
        /// Its shape.
        shape: Vec<usize>,
    },
    /// Two arrays that must have the same shape do not.
    #[error("shape mismatch{}: {what} has shape {found:?}, expected {expected:?}", image_suffix(*.image))]
    ShapeMismatch {
        /// What was compared (`"mask vs scores"`, ...).
        what: &'static str,
        /// Index of the image, when known.
        image: Option<usize>,
        /// The reference shape.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },
    /// An image whose dimensionality differs from the calibration's.
    #[error(
        "dimension mismatch{}: the calibration is for {expected}-D images, this image is {found}-D",
        image_suffix(*.image)
    )]
    DimensionMismatch {
        /// The calibration's image dimensionality.
        expected: usize,
        /// The image's.
        found: usize,
        /// Index of the image, when known.
        image: Option<usize>,
    },
    /// A transform returned NaN for an image without NaN.
    #[error("the {side} transform {transform} produced NaN{} at voxel {index:?}", image_suffix(*.image))]
    TransformNan {
        /// The transform ([`Transform::describe`](crate::Transform::describe)).
        transform: String,
        /// `"inner"` or `"outer"`.
        side: &'static str,
        /// Index of the image, when known.
        image: Option<usize>,
        /// Multi-index of the first NaN voxel.
        index: Vec<usize>,
    },
    /// An infinite score where a transform needs finite ones (Gaussian
    /// smoothing).
    #[error("infinite score{} at voxel {index:?}: {transform} needs finite scores", image_suffix(*.image))]
    InfiniteScore {
        /// The transform.
        transform: &'static str,
        /// Index of the image, when known.
        image: Option<usize>,
        /// Multi-index of the first infinite voxel.
        index: Vec<usize>,
    },
    /// Sets calibrated with each image's own spacing were given an image
    /// without one, for transforms that depend on it.
    #[error(
        "these sets were calibrated with each image's own spacing and {transforms} depend on it: \
         give this image's spacing{}",
        image_suffix(*.image)
    )]
    SpacingRequired {
        /// The transforms, `"f_I / f_O"`.
        transforms: String,
        /// Index of the image, when known.
        image: Option<usize>,
    },
    /// Two calibrations (or a calibration and a calibrator) computed with
    /// different transforms, combination, default spacing or dimensionality.
    #[error("incompatible calibrations: {field} {} here, {} there", one_line(ours), one_line(theirs))]
    IncompatibleCalibration {
        /// What differs.
        field: &'static str,
        /// Its value on the receiving side.
        ours: String,
        /// Its value on the other side.
        theirs: String,
    },
    /// No calibration images were observed.
    #[error("no calibration data: observe at least one (scores, mask) pair before fitting")]
    NoCalibrationData,
    /// An image of a group the sets were not calibrated for.
    #[error(
        "{}group {} was not calibrated (known groups: {})",
        image.map_or_else(String::new, |i| format!("image {i}: ")),
        one_line(group),
        one_line(known)
    )]
    UnknownGroup {
        /// The image (its position in the files), when known.
        image: Option<usize>,
        /// The image's group.
        group: String,
        /// The groups of the calibration.
        known: String,
    },
    /// Voxel spacing that is not positive and finite, or has the wrong length.
    #[error("invalid voxel spacing {spacing:?} for a {ndim}-D image: {reason}")]
    InvalidSpacing {
        /// The spacing given.
        spacing: Vec<f64>,
        /// Dimension of the image it was applied to.
        ndim: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Levels that do not fit together (see [`LevelsError`]).
    #[error(transparent)]
    Levels(#[from] LevelsError),
    /// A name (of a mode, a side, a method, a precision, ...) that is not one
    /// of the known names.
    #[error("unknown {what} {}; known: {known}", one_line_quoted(name))]
    UnknownName {
        /// What was named (`"mode"`, `"side"`, ...).
        what: &'static str,
        /// The name given.
        name: String,
        /// The known names.
        known: &'static str,
    },
    /// Inputs or options that do not fit together or do not fit the data
    /// (a class axis outside the image, transform options given for
    /// already transformed scores, a mask stack for per-subject scores).
    #[error("{}", escape(reason))]
    Options {
        /// What is wrong, naming the option and the fix.
        reason: String,
    },
    /// Any other parameter out of its domain.
    #[error("invalid {name} = {}: {}", one_line(value), escape(reason))]
    InvalidParameter {
        /// Parameter name.
        name: &'static str,
        /// The rejected value, formatted.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Per-subject score and mask files whose IDs do not pair up.
    #[error(
        "unpaired subjects: {}{}",
        [list("scores without a mask", scores_only), list("masks without scores", masks_only)]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; "),
        hint.as_deref().map_or_else(String::new, |h| format!("; {}", escape(h)))
    )]
    UnpairedSubjects {
        /// IDs with scores only.
        scores_only: Vec<String>,
        /// IDs with a mask only.
        masks_only: Vec<String>,
        /// A suggestion (e.g. the suffix options that would pair them).
        hint: Option<String>,
    },
    /// Two files with the same subject ID.
    #[error("subject {} is given twice: {} and {}", one_line(id), escape(&first.display().to_string()), escape(&second.display().to_string()))]
    DuplicateSubject {
        /// The ID.
        id: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
    /// A folder or pattern that names no image file.
    #[error("no image files (.npy, .nii, .nii.gz) in {}", one_line(pattern))]
    NoSubjects {
        /// The folder or pattern.
        pattern: String,
    },
    /// A manifest line that cannot be used.
    #[error("{}: line {line}: {}", escape(&path.display().to_string()), escape(problem))]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// A file could not be read or written, or does not hold what was
    /// expected (see [`FileProblem`]).
    #[error("{}: {problem}", escape(&path.display().to_string()))]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// A problem with the contents of a file (a NaN score, a non-binary
    /// mask value, ...), with the file named.
    #[error("{}: {error}", escape(&path.display().to_string()))]
    InFile {
        /// The file.
        path: PathBuf,
        /// The problem, with image and voxel indices as stored in the file.
        error: Box<Error>,
    },
    /// A field of the pipeline record saved with fitted sets (module
    /// `pipeline::record`) does not fit the new images: the field is named,
    /// so that the caller can name the file.
    #[error("field {field}: {}", escape(reason))]
    RecordField {
        /// The record's field (`class_axis`, `input`, ...).
        field: &'static str,
        /// Why it does not fit.
        reason: String,
    },
    /// The computation was cancelled (see [`crate::cancel::Cancel`]), e.g.
    /// by Ctrl-C; nothing was published.
    #[error("interrupted")]
    Interrupted,
    /// A buffer proportional to the input could not be allocated: the
    /// memory (or the process's limit) is too small for this input.
    #[error("out of memory: cannot allocate {} for {what}; process smaller images or batches", fmt_bytes(*bytes))]
    OutOfMemory {
        /// The bytes asked for.
        bytes: u64,
        /// What the buffer was for (`"the transformed scores"`, ...).
        what: &'static str,
    },
}

/// A byte count for messages: `2.4 GB`, `512 bytes`.
fn fmt_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut x = bytes as f64;
    let mut unit = "EB";
    for u in UNITS {
        x /= 1000.0;
        if x < 1000.0 {
            unit = u;
            break;
        }
    }
    if unit == "EB" {
        x /= 1000.0;
    }
    format!("{x:.1} {unit}")
}

/// Level options that do not fit together: the facts of an
/// [`Error::Levels`]. The text names the options as the library's
/// [`Levels`](crate::levels::Levels) does (`alpha`, `weights`,
/// `alpha_inner`/`alpha_outer`, `delta`, `mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LevelsError {
    /// A mode given without its level.
    #[error("mode {mode} needs the level alpha")]
    MissingAlpha {
        /// The mode.
        mode: &'static str,
    },
    /// Weights with a mode other than Bonferroni.
    #[error("weights apply to mode bonferroni only, not to mode {mode}")]
    WeightsNeedBonferroni {
        /// The mode.
        mode: &'static str,
    },
    /// Weights and an explicit split.
    #[error("give either weights or alpha_inner/alpha_outer, not both")]
    WeightsAndSplit,
    /// One of `alpha_inner`, `alpha_outer` without the other.
    #[error("give both alpha_inner and alpha_outer, or neither")]
    HalfSplit,
    /// Marginal levels given twice.
    #[error("mode marginal takes alpha or alpha_inner/alpha_outer, not both")]
    AlphaAndSplit,
    /// A mode with one level given a split.
    #[error("mode {mode} uses one level: give alpha only")]
    OneLevel {
        /// The mode.
        mode: &'static str,
    },
    /// Risk, bound or grid with a mode other than risk control.
    #[error("risk, bound and grid apply to mode risk-control, not to mode {mode}")]
    RiskOptionsNeedRiskControl {
        /// The mode.
        mode: &'static str,
    },
    /// The precision risk without `delta`.
    #[error(
        "the precision risk is not monotone in the threshold, so conformal risk control (in expectation) \
         does not apply: give delta (Learn-then-Test with Hoeffding-Bentkus p-values)"
    )]
    PrecisionNeedsDelta,
    /// A bound without `delta`.
    #[error("bound {bound} holds with probability 1 - delta: give delta too")]
    BoundNeedsDelta {
        /// The bound.
        bound: &'static str,
    },
    /// The WSR bound on a grid that is not in `[0, 1]`.
    #[error(
        "the WSR bound on a grid takes its candidate risk levels from the grid (as MAPIE): \
         the grid must lie in [0, 1] (thresholds on probabilities)"
    )]
    WsrGrid,
    /// A bound that does not apply to the risk.
    #[error("bound {bound} does not apply to the {risk} risk; it takes {allowed}")]
    BoundForRisk {
        /// The bound.
        bound: &'static str,
        /// The risk.
        risk: &'static str,
        /// The bounds that apply.
        allowed: &'static str,
    },
    /// A mode without a joint version over several structures.
    #[error("mode {mode} has no joint version over several structures")]
    NotJoint {
        /// The mode.
        mode: &'static str,
    },
    /// An explicit split with several structures.
    #[error("with several structures, give alpha (and weights for bonferroni), not alpha_inner/alpha_outer")]
    SplitPerStructure,
    /// An explicit split for a validation over a grid of levels.
    #[error("a validation takes its levels from the alpha grid: give weights, not alpha_inner/alpha_outer")]
    SplitOnGrid,
}

/// Something valid but probably not what the user meant: one line each,
/// printed by the CLI, returned by [`ConfidenceSets::warnings`](crate::ConfidenceSets::warnings)
/// and [`ScoreTransform::warning_for`](crate::ScoreTransform::warning_for).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum Warning {
    /// Too few calibration images for a finite threshold at this level.
    #[error(
        "only n = {n} calibration images; alpha_{side} = {alpha_text} needs at least {needed} for a finite \
         threshold, so lambda_{side_letter} = inf and {consequence} (valid but uninformative){fix}",
        alpha_text = num(*alpha),
        side_letter = if *side == "inner" { "I" } else { "O" },
        consequence = consequence(side),
        fix = smallest_alpha.map_or_else(String::new, |a| format!(
            "; with {n} images, alpha_{side} >= {} is finite: raise alpha, give this side more of it \
             (weights), or use mode max (one threshold at the whole alpha)",
            num(a)
        ))
    )]
    TooFewImages {
        /// `"inner"`, `"outer"` or `"inner and outer"`.
        side: &'static str,
        /// The level.
        alpha: f64,
        /// Calibration images.
        n: usize,
        /// Images needed.
        needed: usize,
        /// The smallest level that is finite with `n` images, if any
        /// ([`Rank::smallest_alpha`](crate::quantile::Rank::smallest_alpha)).
        smallest_alpha: Option<f64>,
    },
    /// A level above 1/2: coverage of `1 - alpha` is probably not what was
    /// meant (90% coverage is `alpha = 0.1`).
    #[error(
        "alpha = {alpha} promises coverage of only {coverage}% (1 - alpha); for {meant}% coverage, alpha is {flipped}",
        coverage = fmt_percent(1.0 - alpha),
        meant = fmt_percent(*alpha),
        flipped = fmt_level(1.0 - alpha)
    )]
    LargeAlpha {
        /// The level given.
        alpha: f64,
    },
    /// A threshold that is an infinite calibration statistic.
    #[error(
        "lambda_{} = inf: the calibration statistic of rank {k} is infinite, so {}",
        if *side == "inner" { "I" } else { "O" },
        consequence(side)
    )]
    InfiniteStatistic {
        /// `"inner"` or `"outer"`.
        side: &'static str,
        /// The rank.
        k: usize,
    },
    /// Max mode whose threshold lies above every calibration image's
    /// background maximum of `f_I`: the two transforms are on different
    /// scales, and the inner set is empty unless `f_I` exceeds `lambda`.
    #[error(
        "mode max: lambda = {lambda} is above the inner statistic of every calibration image (largest {max_tau}): \
         f_I and f_O are on different scales, so the inner set is empty unless f_I exceeds {lambda}; \
         consider a Bonferroni split",
        lambda = num(*lambda),
        max_tau = num(*max_tau)
    )]
    MaxModeScales {
        /// The joint threshold.
        lambda: f64,
        /// The largest `tau_i`.
        max_tau: f64,
    },
    /// Scores that look like probabilities thresholded at 0 by a mask-based
    /// transform: the predicted mask is (almost) everything.
    #[error(
        "the scores all lie in [0, 1] (probabilities?) but {transform} predicts the mask as scores > 0, \
         which is almost every voxel; for probabilities give it the threshold 0.5 \
         (the transform option threshold=0.5, the CLI's --mask-threshold 0.5, Python's mask_threshold=0.5)"
    )]
    ProbabilitiesThresholdedAtZero {
        /// The transform.
        transform: String,
    },
    /// Risk control certified no threshold although there were enough
    /// images for one: even the trivial end of the search (or the grid's
    /// first value) has a bound at or above `alpha`.
    #[error(
        "risk control certified no threshold at alpha = {} with n = {n} calibration images, so {} \
         (valid but uninformative): the calibration losses are too high for the bound at this level",
        num(*alpha),
        consequence(side)
    )]
    RiskNotCertified {
        /// `"inner"` or `"outer"`.
        side: &'static str,
        /// The level.
        alpha: f64,
        /// Calibration images.
        n: usize,
    },
    /// A warning about the fit of one group (or of the pooled groups).
    #[error("{group}: {warning}")]
    InGroup {
        /// The group (`"group 3"`, or `"pooled groups 3, 5"` for the pooled fit).
        group: String,
        /// The warning.
        warning: Box<Warning>,
    },
    /// Groups with too few images each, fitted together.
    #[error(
        "too few images in each of the groups {groups}: pooled into one fit (n = {n}); for them the \
         guarantee holds only marginally over the pooled groups, not for each group"
    )]
    PooledGroups {
        /// The pooled groups.
        groups: String,
        /// Their images.
        n: usize,
    },
    /// Every predicted image has an empty inner set.
    #[error(
        "the inner set is empty for all {images} images: lambda_I = {} is above every inner score",
        num(*lambda)
    )]
    InnerAlwaysEmpty {
        /// The images predicted.
        images: usize,
        /// `lambda_I`.
        lambda: f64,
    },
    /// Every predicted image's outer set is the whole image.
    #[error(
        "the outer set is the whole image for all {images} images: lambda_O = {} covers every voxel",
        num(*lambda)
    )]
    OuterAlwaysEverything {
        /// The images predicted.
        images: usize,
        /// `lambda_O`.
        lambda: f64,
    },
}

/// A number for a message: as Rust prints it, unless that is long (`1e300`
/// is not written with 300 digits).
pub(crate) fn num(x: f64) -> String {
    let s = x.to_string();
    if s.len() > 20 {
        format!("{x:e}")
    } else {
        s
    }
}

/// `100 x` with at most 4 decimals, trailing zeros dropped.
fn fmt_percent(x: f64) -> String {
    fmt_level(100.0 * x)
}

/// A level with at most 6 decimals, trailing zeros dropped (`0.1`, not `0.09999999999999998`).
fn fmt_level(x: f64) -> String {
    let s = format!("{x:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" {
        "0".to_owned()
    } else {
        s.to_owned()
    }
}

/// For a whole-number mask value other than 0/1 (a label map, a 0/255
/// mask): how to name the object's labels.
fn label_hint(value: f64) -> String {
    if value.fract() != 0.0 || !(2.0..=1e15).contains(&value) {
        return String::new();
    }
    format!(
        " (a label map or a 0/{value} mask? name the object's labels: CLI --label {value} or --labels 1,{value}, \
         Python labels=[{value}]; or, if {value} marks voxels to ignore: CLI --ignore-label {value}, \
         Python ignore_label={value})"
    )
}

fn consequence(side: &str) -> &'static str {
    match side {
        "inner" => "the inner set is empty for every image",
        "outer" => "the outer set is the whole image",
        _ => "the inner set is empty and the outer set the whole image",
    }
}

/// What is wrong with a file: the facts of an [`Error::File`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileProblem {
    /// The operating system refused (not found, permission denied, ...).
    Io {
        /// The kind of I/O error.
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// The file has no bytes at all.
    Empty,
    /// The file does not start with the NumPy magic string.
    NotNpy,
    /// The file ends inside its `.npy` header.
    TruncatedHeader,
    /// The `.npy` header cannot be parsed.
    BadHeader {
        /// What the parser reported.
        reason: String,
    },
    /// An element type this crate does not read.
    UnsupportedDtype {
        /// The NumPy type descriptor, e.g. `'<c16'`.
        dtype: String,
        /// What the file was read as (`"scores"`, `"image indices"`, ...).
        expected: &'static str,
        /// The dtypes accepted there.
        supported: &'static str,
    },
    /// Fewer data bytes than the header's shape and dtype need.
    Truncated {
        /// Bytes of data the header describes.
        expected_bytes: u64,
        /// Bytes of data present after the header.
        found_bytes: u64,
    },
    /// More data bytes than the header's shape and dtype describe.
    TrailingBytes {
        /// Bytes of data the header describes.
        expected_bytes: u64,
        /// Bytes of data present after the header.
        found_bytes: u64,
    },
    /// Data that is not valid for its dtype (e.g. a bool byte other than 0/1).
    BadData {
        /// What the parser reported.
        reason: String,
    },
    /// A stack whose images have no voxels (a zero-length spatial axis).
    EmptyImages {
        /// The shape in the file.
        shape: Vec<usize>,
    },
    /// An array whose number of axes does not fit its use.
    WrongShape {
        /// The shape in the file.
        shape: Vec<usize>,
        /// What was expected, e.g. `"a batch-first stack (N, spatial...)"`.
        expected: &'static str,
    },
    /// An integer too large to be represented exactly as `f64`.
    InexactValue {
        /// The value, as written in the file.
        value: String,
        /// Its multi-index in the file (image first).
        index: Vec<usize>,
    },
    /// An image index outside `0..n_images`.
    IndexOutOfRange {
        /// The index.
        value: i128,
        /// Its position in the index file.
        position: usize,
        /// Number of images in the stack.
        n_images: usize,
    },
    /// An image index listed twice.
    DuplicateIndex {
        /// The index.
        value: usize,
        /// Its first position in the index file.
        first: usize,
        /// Its second position.
        second: usize,
    },
    /// Writing failed (the destination was left untouched).
    Write {
        /// What failed.
        message: String,
    },
    /// Not a single-file NIfTI image: the header size or the magic string
    /// is wrong, or the file is one half of a `.hdr`/`.img` pair.
    NotNifti {
        /// What was found.
        reason: String,
    },
    /// A NIfTI header that this crate does not accept: dimensions, voxel
    /// sizes, offsets or sizes out of range.
    BadNiftiHeader {
        /// What is wrong.
        reason: String,
    },
    /// A NIfTI datatype that this crate does not read (complex, RGB,
    /// float128, ...).
    UnsupportedNiftiDatatype {
        /// The datatype's name (`"complex64"`, `"RGB"`, `"unknown"`, ...).
        name: &'static str,
        /// Its code in the header.
        code: i16,
    },
    /// A NIfTI file (or its decompressed gzip stream) that ends before its
    /// header or its data does.
    NiftiTruncated {
        /// `"header"` or `"data"`.
        part: &'static str,
        /// Bytes the header declares for that part.
        expected_bytes: u64,
        /// Bytes the file holds for it.
        found_bytes: u64,
    },
    /// Not a regular file where a file is meant (a folder, a device such
    /// as `/dev/zero`, a pipe).
    NotRegular,
    /// Larger than any valid file of its kind.
    TooLarge {
        /// The largest size read, in bytes.
        limit: u64,
    },
    /// Text that is not UTF-8.
    NotUtf8,
    /// Values that `f32` cannot hold exactly, read as `f32`.
    NeedsFloat64 {
        /// What the values are, e.g. `"int32"` or `"uint8 scaled by scl_slope 0.5"`.
        values: String,
    },
}

impl std::fmt::Display for FileProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileProblem::Io { message, .. } => f.write_str(&escape(message)),
            FileProblem::Empty => f.write_str("the file is empty (0 bytes); expected a NumPy .npy file"),
            FileProblem::NotNpy => f.write_str("not a NumPy .npy file (no \\x93NUMPY magic string)"),
            FileProblem::TruncatedHeader => f.write_str("truncated .npy file: it ends inside the header"),
            FileProblem::BadHeader { reason } => write!(f, "invalid .npy header: {}", escape(reason)),
            FileProblem::UnsupportedDtype { dtype, expected, supported } => {
                write!(f, "unsupported dtype {dtype} for {expected}; supported: {supported}")
            }
            FileProblem::Truncated { expected_bytes, found_bytes } => write!(
                f,
                "truncated .npy file: the header describes {expected_bytes} bytes of data, \
                 the file holds {found_bytes}"
            ),
            FileProblem::TrailingBytes { expected_bytes, found_bytes } => write!(
                f,
                "{} unexpected bytes after the data (the header describes {expected_bytes} bytes, \
                 the file holds {found_bytes})",
                found_bytes - expected_bytes
            ),
            FileProblem::BadData { reason } => write!(f, "invalid data: {}", escape(reason)),
            FileProblem::EmptyImages { shape } => {
                write!(f, "stack of shape {shape:?}: its images have no voxels")
            }
            FileProblem::WrongShape { shape, expected } => {
                write!(f, "array of shape {shape:?}; expected {expected}")
            }
            FileProblem::InexactValue { value, index } => {
                write!(f, "value {value} at index {index:?} cannot be represented exactly as f64")
            }
            FileProblem::IndexOutOfRange { value, position, n_images } => write!(
                f,
                "image index {value} (at position {position}) is out of range: the stack has \
                 {n_images} images (valid indices 0..={})",
                n_images.saturating_sub(1)
            ),
            FileProblem::DuplicateIndex { value, first, second } => {
                write!(f, "image index {value} is listed twice (positions {first} and {second})")
            }
            FileProblem::Write { message } => write!(f, "cannot write: {}", escape(message)),
            FileProblem::NotRegular => {
                f.write_str("not a regular file (a folder, a device or a pipe); give the path of a file")
            }
            FileProblem::TooLarge { limit } => {
                write!(f, "larger than {limit} bytes, more than any valid file of this kind")
            }
            FileProblem::NotUtf8 => f.write_str("not a text file (not UTF-8)"),
            FileProblem::NotNifti { reason } => {
                write!(f, "not a single-file NIfTI-1 or NIfTI-2 image (.nii, .nii.gz): {reason}")
            }
            FileProblem::BadNiftiHeader { reason } => write!(f, "invalid NIfTI header: {reason}"),
            FileProblem::UnsupportedNiftiDatatype { name, code } => write!(
                f,
                "unsupported datatype {name} (code {code}); supported: uint8, int8, uint16, int16, \
                 uint32, int32, uint64, int64, float32, float64"
            ),
            FileProblem::NiftiTruncated { part, expected_bytes, found_bytes } => write!(
                f,
                "truncated NIfTI file: the {part} needs {expected_bytes} bytes, the file holds {found_bytes}"
            ),
            FileProblem::NeedsFloat64 { values } => {
                write!(f, "its values ({values}) are not all exact in float32; read them as float64")
            }
        }
    }
}

/// A user-given string made safe to quote in a one-line message: control
/// characters escaped, at most 80 characters.
pub(crate) fn one_line(s: &str) -> String {
    if s.len() > 20 {
        if let Ok(x) = s.trim().parse::<f64>() {
            return num(x);
        }
    }
    let escaped = escape(s);
    if escaped.chars().count() > 80 {
        let mut t: String = escaped.chars().take(77).collect();
        t.push_str("...");
        t
    } else {
        escaped
    }
}

/// Control characters (newlines, ...) escaped, so that a message stays on
/// one line whatever a user or a file put in it.
pub(crate) fn escape(s: &str) -> String {
    if s.chars().any(char::is_control) {
        s.chars()
            .flat_map(|c| if c.is_control() { c.escape_debug().collect::<Vec<_>>() } else { vec![c] })
            .collect()
    } else {
        s.to_owned()
    }
}

/// A user-given name quoted on one line (`"max"`), at most 80 characters.
pub(crate) fn one_line_quoted(s: &str) -> String {
    format!("{:?}", one_line(s))
}

/// `"what: a, b, c (and N more); "` for a non-empty list.
fn list(what: &str, ids: &[String]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let shown: Vec<String> = ids.iter().take(8).map(|s| one_line(s)).collect();
    let more = if ids.len() > 8 { format!(" and {} more", ids.len() - 8) } else { String::new() };
    format!("{what}: {}{more}", shown.join(", "))
}

fn image_suffix(image: Option<usize>) -> String {
    image.map_or_else(String::new, |i| format!(" of image {i}"))
}

impl Error {
    /// The error without its image index (for images named otherwise, e.g.
    /// by their file).
    #[must_use]
    pub fn without_image(mut self) -> Self {
        if let Some(image) = self.image_slot() {
            *image = None;
        }
        self
    }

    /// The image index of the errors that describe one image.
    fn image_slot(&mut self) -> Option<&mut Option<usize>> {
        match self {
            Error::NanScore { image, .. }
            | Error::NonBinaryMask { image, .. }
            | Error::InvalidLabel { image, .. }
            | Error::EmptyImage { image, .. }
            | Error::ShapeMismatch { image, .. }
            | Error::DimensionMismatch { image, .. }
            | Error::TransformNan { image, .. }
            | Error::InfiniteScore { image, .. }
            | Error::SpacingRequired { image, .. } => Some(image),
            _ => None,
        }
    }

    /// The image index of an error that describes one image, if known.
    #[must_use]
    pub fn image(&self) -> Option<usize> {
        // one list of image errors: image_slot's, read through a copy
        self.clone().image_slot().and_then(|i| *i)
    }

    /// Attach an image index to errors that describe one image (NaN, mask,
    /// shape); other variants are returned unchanged.
    #[must_use]
    pub fn in_image(mut self, i: usize) -> Self {
        if let Some(image) = self.image_slot() {
            *image = Some(i);
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_valued_mask_suggests_naming_the_labels() {
        let e = |value| Error::NonBinaryMask { image: Some(3), index: vec![0, 1], value }.to_string();
        assert!(e(255.0).contains("CLI --label 255") && e(255.0).contains("labels=[255]"), "{}", e(255.0));
        assert!(e(2.0).contains("--labels 1,2"), "{}", e(2.0));
        assert!(
            e(255.0).contains("--ignore-label 255") && e(255.0).contains("ignore_label=255"),
            "{}",
            e(255.0)
        );
        assert!(e(0.5).ends_with("masks must be 0/1"), "{}", e(0.5));
        assert!(e(-1.0).ends_with("masks must be 0/1"), "{}", e(-1.0));
    }

    #[test]
    fn huge_numbers_are_short_in_messages() {
        let e = Error::InvalidAlpha { name: "alpha", value: 1e300 };
        assert_eq!(e.to_string(), "alpha = 1e300 is outside (0, 1)");
        let e = Error::NonBinaryMask { image: None, index: vec![0], value: -1e-300 };
        assert!(e.to_string().starts_with("mask holds -1e-300 at voxel [0]"), "{e}");
        let e = Error::InvalidParameter { name: "delta", value: 1e300.to_string(), reason: "r".into() };
        assert_eq!(e.to_string(), "invalid delta = 1e300: r");
        assert_eq!(
            Error::InvalidAlpha { name: "alpha", value: 1.5 }.to_string(),
            "alpha = 1.5 is outside (0, 1)"
        );
        let w = Warning::TooFewImages {
            side: "inner",
            alpha: 1e-300,
            n: 1,
            needed: 7,
            smallest_alpha: Some(0.5),
        };
        assert!(w.to_string().contains("alpha_inner = 1e-300 needs at least 7"), "{w}");
        let w = Warning::InnerAlwaysEmpty { images: 2, lambda: 1e300 };
        assert!(w.to_string().contains("lambda_I = 1e300 is above"), "{w}");
    }

    #[test]
    fn messages_name_image_and_voxel() {
        let e = Error::NanScore { what: "scores", image: None, index: vec![3, 4] }.in_image(7);
        assert_eq!(e.to_string(), "NaN in scores of image 7 at voxel [3, 4]");
        let e = Error::ShapeMismatch {
            what: "mask vs scores",
            image: None,
            expected: vec![2, 3],
            found: vec![3, 2],
        };
        assert_eq!(e.to_string(), "shape mismatch: mask vs scores has shape [3, 2], expected [2, 3]");
    }
}
