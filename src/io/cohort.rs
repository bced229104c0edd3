//! Per-subject files: one score image (and one mask) per subject, as
//! segmentation networks in medicine leave them (MONAI, nnU-Net), with its
//! own shape and, for NIfTI, its own spacing and affine.
//!
//! A [`Cohort`] is a list of [`Subject`]s found in a folder, by a glob
//! pattern, or in a manifest (CSV with columns `id,scores,mask` and an
//! optional `spacing`). Score and mask files pair up by subject ID: the file
//! name without its extension (`.nii.gz`, `.nii`, `.npy`) and without a
//! suffix the user sets ([`Pairing`], e.g. `_prob`, `_seg`). Unpaired or
//! duplicate IDs are an error that lists them.
//!
//! Subjects are read one at a time ([`Cohort::read_scores`],
//! [`Cohort::read_mask`]), so a cohort streams through the pipeline with
//! memory independent of its size; outputs are written in the subject's own
//! format, with its NIfTI header and affine ([`Cohort::mask_output`]).
//!
//! ```
//! use confseg::io::cohort::{Cohort, Pairing};
//! use confseg::io::write_npy;
//! use ndarray::Array2;
//!
//! let dir = tempfile::tempdir().unwrap();
//! for id in ["sub-01", "sub-02"] {
//!     write_npy(dir.path().join(format!("{id}_prob.npy")), &Array2::<f32>::zeros((4, 5)))?;
//!     write_npy(dir.path().join(format!("{id}_seg.npy")), &Array2::<u8>::zeros((4, 5)))?;
//! }
//! let pattern = |s: &str| dir.path().join(format!("*_{s}.npy")).display().to_string();
//! let pairing = Pairing::new("_prob", "_seg");
//! let cohort = Cohort::discover(&pattern("prob"), Some(&pattern("seg")), &pairing)?;
//! assert_eq!(cohort.len(), 2);
//! assert_eq!(cohort.subjects()[1].id, "sub-02");
//! # Ok::<(), confseg::Error>(())
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayRef};

use super::{file_error, os_error, Output, Precision, ReadFloat};
use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
use crate::image::{Geometry, Spacing};
use crate::mask::Coding;

/// Most subjects a manifest may list (and most lines it may have).
pub const MAX_SUBJECTS: usize = 10_000_000;

/// Longest manifest file read, in bytes.
const MAX_MANIFEST_BYTES: u64 = 1 << 30;

/// One subject: its ID, score file, mask file and (from a manifest) spacing.
#[derive(Debug, Clone, PartialEq)]
pub struct Subject {
    /// The subject ID.
    pub id: String,
    /// The score file (`.npy` holding one image, `.nii`, `.nii.gz`).
    pub scores: PathBuf,
    /// The mask or label map file, if known.
    pub mask: Option<PathBuf>,
    /// The spacing given for this subject (manifest), overriding the file's.
    pub spacing: Option<Spacing>,
    /// The subject's group label as the manifest's `group` column writes
    /// it, for group-conditional calibration (`crate::groups` parses it).
    pub group: Option<String>,
}

/// How file names become subject IDs: the suffix removed from score and
/// mask file names (after the extension).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pairing {
    scores_suffix: String,
    masks_suffix: String,
}

impl Pairing {
    /// Strip `scores_suffix` from score file names and `masks_suffix` from
    /// mask file names (e.g. `"_prob"`, `"_seg"`).
    pub fn new(scores_suffix: impl Into<String>, masks_suffix: impl Into<String>) -> Self {
        Pairing { scores_suffix: scores_suffix.into(), masks_suffix: masks_suffix.into() }
    }
}

/// The file formats of per-subject images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A `.npy` file holding one image (no batch axis).
    Npy,
    /// NIfTI-1 or -2, `.nii`.
    Nii,
    /// NIfTI-1 or -2, gzipped, `.nii.gz`.
    NiiGz,
    /// nnU-Net's class probabilities, `.npz` (scores only; the geometry
    /// comes from the NIfTI file of the same case beside it, see
    /// [`super::npz`]).
    Npz,
}

impl Format {
    /// The format of a file by its extension.
    #[must_use]
    pub fn of(path: &Path) -> Option<Format> {
        let name = path.file_name()?.to_str()?.to_ascii_lowercase();
        if name.ends_with(".nii.gz") {
            Some(Format::NiiGz)
        } else if name.ends_with(".nii") {
            Some(Format::Nii)
        } else if name.ends_with(".npy") {
            Some(Format::Npy)
        } else if name.ends_with(".npz") {
            Some(Format::Npz)
        } else {
            None
        }
    }

    /// The extension, with its dot.
    #[must_use]
    pub fn extension(self) -> &'static str {
        match self {
            Format::Npy => ".npy",
            Format::Nii => ".nii",
            Format::NiiGz => ".nii.gz",
            Format::Npz => ".npz",
        }
    }
}

/// The file name of `path` without its image extension.
fn stem(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let ext = Format::of(path)?.extension();
    Some(name[..name.len() - ext.len()].to_owned())
}

/// Check that a subject ID (or an output name made from it) is one
/// file-name component: outputs are named after IDs, so an ID must never
/// reach outside the output folder.
fn check_id(id: &str) -> std::result::Result<(), String> {
    let bad = id.is_empty()
        || id == "."
        || id == ".."
        || id.contains(['/', '\\', '\0'])
        || id.chars().any(char::is_control)
        || Path::new(id).is_absolute();
    if bad {
        Err(format!(
            "subject ID {id:?} is not a plain file name (no '/', '\\', '..', control characters); \
             outputs are named after IDs"
        ))
    } else {
        Ok(())
    }
}

/// Whether a command-line path argument names per-subject files: a folder,
/// a glob pattern, or a single NIfTI file (a `.npy` file is a stack).
#[must_use]
pub fn is_per_subject(arg: &str) -> bool {
    let p = Path::new(arg);
    p.is_dir()
        || arg.contains(['*', '?', '['])
        || matches!(Format::of(p), Some(Format::Nii | Format::NiiGz | Format::Npz))
}

/// An image file whose name is not UTF-8: its ID cannot be text, so it
/// is an error rather than a subject dropped without a word.
fn non_utf8_image(f: &Path) -> Option<Error> {
    let name = f.file_name()?;
    if name.to_str().is_some() || !f.is_file() {
        return None;
    }
    let lossy = name.to_string_lossy().to_ascii_lowercase();
    [".npy", ".nii", ".nii.gz", ".npz"].iter().any(|e| lossy.ends_with(e)).then(|| Error::Options {
        reason: format!(
            "{}: the file name is not UTF-8, so it has no subject ID; rename the file",
            crate::error::escape(&f.to_string_lossy())
        ),
    })
}

/// The image files a folder, glob pattern or single file names, sorted.
fn list(arg: &str) -> Result<Vec<PathBuf>> {
    let p = Path::new(arg);
    let mut files: Vec<PathBuf> = if p.is_dir() {
        let mut files = Vec::new();
        for f in std::fs::read_dir(p).map_err(|e| os_error(p, &e))?.filter_map(|e| e.ok().map(|e| e.path())) {
            if f.is_file() && Format::of(&f).is_some() {
                files.push(f);
            } else if let Some(e) = non_utf8_image(&f) {
                return Err(e);
            }
        }
        files
    } else if arg.contains(['*', '?', '[']) {
        let paths = glob::glob(arg).map_err(|e| Error::InvalidParameter {
            name: "pattern",
            value: arg.to_owned(),
            reason: e.to_string(),
        })?;
        // `**` follows symbolic links to folders: a link loop repeats the
        // same files forever, so the walk stops at the first file reached twice
        let mut seen = std::collections::HashSet::new();
        let mut files = Vec::new();
        for f in paths.filter_map(std::result::Result::ok) {
            if !(f.is_file() && Format::of(&f).is_some()) {
                if let Some(e) = non_utf8_image(&f) {
                    return Err(e);
                }
                continue;
            }
            let real = f.canonicalize().unwrap_or_else(|_| f.clone());
            if !seen.insert(real) || files.len() >= MAX_SUBJECTS {
                return Err(Error::Options {
                    reason: format!(
                        "the pattern {arg:?} reaches {} twice, through a symbolic link (a loop?) \
                         or more than {MAX_SUBJECTS} files; name the files without it",
                        f.display()
                    ),
                });
            }
            files.push(f);
        }
        files
    } else {
        if !p.is_file() {
            let e = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
            return Err(os_error(p, &e));
        }
        vec![p.to_path_buf()]
    };
    files.sort();
    if files.is_empty() {
        return Err(Error::NoSubjects { pattern: arg.to_owned() });
    }
    Ok(without_npz_geometry(files))
}

/// nnU-Net writes `case.npz` (probabilities) next to `case.nii.gz` (the
/// predicted segmentation, whose header is the case's geometry): where a
/// case has both, the `.npz` is the subject and the NIfTI file only its
/// geometry.
fn without_npz_geometry(files: Vec<PathBuf>) -> Vec<PathBuf> {
    let npz: std::collections::HashSet<PathBuf> = files
        .iter()
        .filter(|f| Format::of(f) == Some(Format::Npz))
        .filter_map(|f| Some(f.with_file_name(stem(f)?)))
        .collect();
    if npz.is_empty() {
        return files;
    }
    files
        .into_iter()
        .filter(|f| {
            !matches!(Format::of(f), Some(Format::Nii | Format::NiiGz))
                || stem(f).is_none_or(|s| !npz.contains(&f.with_file_name(s)))
        })
        .collect()
}

/// Files by ID (`suffix` removed; with a suffix, only files whose name
/// ends with it, so scores and masks may share a folder); duplicates are an
/// error.
fn by_id(files: &[PathBuf], suffix: &str) -> Result<BTreeMap<String, PathBuf>> {
    let mut out: BTreeMap<String, PathBuf> = BTreeMap::new();
    for f in files.iter().cloned() {
        let Some(s) = stem(&f) else { continue };
        let id = match s.strip_suffix(suffix) {
            _ if suffix.is_empty() => s.clone(),
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => continue,
        };
        if let Some(first) = out.get(&id) {
            return Err(Error::DuplicateSubject { id, first: first.clone(), second: f });
        }
        out.insert(id, f);
    }
    Ok(out)
}

/// The longest suffix starting with `_` or `-` shared by every name.
fn common_suffix(names: &[&String]) -> Option<String> {
    let first = names.first()?;
    let cut = first.rfind(['_', '-'])?;
    let suffix = &first[cut..];
    names.iter().all(|n| n.ends_with(suffix) && n.len() > suffix.len()).then(|| suffix.to_owned())
}

/// Whether two listings name the same files (scores and masks in one
/// folder, told apart by nothing).
fn same_files(a: &[PathBuf], b: &[PathBuf]) -> bool {
    let (mut a, mut b) = (a.to_vec(), b.to_vec());
    a.sort();
    b.sort();
    a == b
}

/// Scores and masks read from the same files: each image would be paired
/// with itself. The error names the suffixes that tell them apart, when the
/// names have two (`sub-01_prob`, `sub-01_seg`).
fn one_folder(files: &[PathBuf], pairing: &Pairing) -> Error {
    let mut suffixes: Vec<String> = files
        .iter()
        .filter_map(|p| stem(p))
        .filter_map(|s| s.rfind(['_', '-']).map(|cut| s[cut..].to_owned()))
        .collect();
    suffixes.sort();
    suffixes.dedup();
    let given = if pairing.scores_suffix.is_empty() {
        String::new()
    } else {
        format!(" (both with the suffix {})", pairing.scores_suffix)
    };
    let fix = match &suffixes[..] {
        [a, b] => format!(
            "; their names end in {a} and {b}: give each its suffix, e.g. --scores-suffix {a} --masks-suffix {b} \
             (Python scores_suffix=, masks_suffix=)"
        ),
        _ => "; give each its suffix (--scores-suffix, --masks-suffix), or a manifest".to_owned(),
    };
    Error::Options {
        reason: format!(
            "the scores and the masks are the same {} files{given}, so each image would be its own mask{fix}",
            files.len()
        ),
    }
}

/// The header facts of one subject's score file.
#[derive(Debug, Clone, PartialEq)]
pub struct SubjectInfo {
    /// The file format.
    pub format: Format,
    /// The image shape (NIfTI: `(x, y, z, ...)`).
    pub shape: Vec<usize>,
    /// The float type that holds its values exactly.
    pub precision: Precision,
    /// Spacing and affine from the header, or the subject's spacing from
    /// the manifest (`None` for a `.npy` file without one: the cohort
    /// default applies).
    pub geometry: Option<Geometry>,
}

/// A list of subjects; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub struct Cohort {
    subjects: Vec<Subject>,
}

impl Cohort {
    /// Find subjects: `scores` and `masks` are each a folder, a glob
    /// pattern or one file; score and mask files pair up by ID.
    ///
    /// # Errors
    /// [`Error::NoSubjects`] for a folder or pattern without image files;
    /// [`Error::DuplicateSubject`]; [`Error::UnpairedSubjects`] listing the
    /// IDs that have scores but no mask or a mask but no scores (with the
    /// suffix options that would pair them, when there are such).
    pub fn discover(scores: &str, masks: Option<&str>, pairing: &Pairing) -> Result<Cohort> {
        let score_list = list(scores)?;
        let Some(masks) = masks else {
            let subjects = by_id(&score_list, &pairing.scores_suffix)?
                .into_iter()
                .map(|(id, scores)| Subject { id, scores, mask: None, spacing: None, group: None })
                .collect();
            return Ok(Cohort { subjects });
        };
        let mask_list = list(masks)?;
        if pairing.scores_suffix == pairing.masks_suffix && same_files(&score_list, &mask_list) {
            return Err(one_folder(&score_list, pairing));
        }
        let tried = Self::pair(&score_list, &mask_list, pairing);
        // Without suffixes, names like sub-01_prob / sub-01_seg pair by
        // their common suffixes when these pair every file.
        match tried {
            Err(Error::UnpairedSubjects { hint: Some(_), .. }) if *pairing == Pairing::default() => {
                let (s, m) = (by_id(&score_list, "")?, by_id(&mask_list, "")?);
                let (Some(a), Some(b)) = (
                    common_suffix(&s.keys().collect::<Vec<_>>()),
                    common_suffix(&m.keys().collect::<Vec<_>>()),
                ) else {
                    return tried;
                };
                Self::pair(&score_list, &mask_list, &Pairing::new(a, b)).or(tried)
            }
            other => other,
        }
    }

    /// Pair score and mask files by ID.
    fn pair(score_list: &[PathBuf], mask_list: &[PathBuf], pairing: &Pairing) -> Result<Cohort> {
        let score_files = by_id(score_list, &pairing.scores_suffix)?;
        let mut mask_files = by_id(mask_list, &pairing.masks_suffix)?;
        let scores_only: Vec<String> =
            score_files.keys().filter(|id| !mask_files.contains_key(*id)).cloned().collect();
        let masks_only: Vec<String> =
            mask_files.keys().filter(|id| !score_files.contains_key(*id)).cloned().collect();
        if !scores_only.is_empty() || !masks_only.is_empty() {
            let s: Vec<&String> = score_files.keys().collect();
            let m: Vec<&String> = mask_files.keys().collect();
            let hint = match (common_suffix(&s), common_suffix(&m)) {
                (Some(a), Some(b)) if a != b => Some(format!(
                    "to pair by ID, remove the scores suffix {a} and the masks suffix {b} \
                     (CLI --scores-suffix {a} --masks-suffix {b}; Python scores_suffix=, masks_suffix=)"
                )),
                _ => None,
            };
            return Err(Error::UnpairedSubjects { scores_only, masks_only, hint });
        }
        let subjects = score_files
            .into_iter()
            .map(|(id, scores)| {
                let mask = mask_files.remove(&id);
                Subject { id, scores, mask, spacing: None, group: None }
            })
            .collect();
        Ok(Cohort { subjects })
    }

    /// Subjects listed in a CSV manifest with a header line naming the
    /// columns `id`, `scores`, `mask` (optional when `masks` is false) and
    /// optionally `spacing` (e.g. `0.8 0.8 2.5`, or quoted `"0.8,0.8,2.5"`)
    /// and `group` (an integer or a name per subject, for group-conditional
    /// calibration).
    /// Relative paths are relative to the manifest's folder.
    ///
    /// # Errors
    /// [`Error::Manifest`] naming the line of a missing column, an empty
    /// cell, a bad spacing, or too many lines; [`Error::DuplicateSubject`].
    pub fn from_manifest(path: impl AsRef<Path>, masks: bool) -> Result<Cohort> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| os_error(path, &e))?;
        if !meta.is_file() {
            // a device such as /dev/zero reports 0 bytes and never ends
            return Err(file_error(path, FileProblem::NotRegular));
        }
        let len = meta.len();
        let bad = |line: usize, problem: String| Error::Manifest { path: path.to_path_buf(), line, problem };
        if len > MAX_MANIFEST_BYTES {
            return Err(bad(0, format!("{len} bytes; at most {MAX_MANIFEST_BYTES}")));
        }
        let base = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .comment(Some(b'#'))
            .from_path(path)
            .map_err(|e| bad(0, e.to_string()))?;
        let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        let column = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
        let (Some(id_col), Some(scores_col)) = (column("id"), column("scores")) else {
            return Err(bad(1, "the header must name the columns id and scores (and mask, spacing)".into()));
        };
        let mask_col = column("mask");
        if masks && mask_col.is_none() {
            return Err(bad(1, "no mask column (id,scores,mask[,spacing])".into()));
        }
        let spacing_col = column("spacing");
        let group_col = column("group");
        let mut subjects: Vec<Subject> = Vec::new();
        let mut seen: BTreeMap<String, PathBuf> = BTreeMap::new();
        for (k, record) in reader.records().enumerate() {
            let line = k + 2;
            if subjects.len() >= MAX_SUBJECTS {
                return Err(bad(line, format!("more than {MAX_SUBJECTS} subjects")));
            }
            let record = record.map_err(|e| bad(line, e.to_string()))?;
            let cell = |c: usize, name: &str| {
                record.get(c).filter(|v| !v.is_empty()).ok_or_else(|| bad(line, format!("no {name}")))
            };
            let id = cell(id_col, "id")?.to_owned();
            check_id(&id).map_err(|problem| bad(line, problem))?;
            let file = |v: &str| {
                let p = PathBuf::from(v);
                if p.is_absolute() {
                    p
                } else {
                    base.join(p)
                }
            };
            let scores = file(cell(scores_col, "scores")?);
            let mask = match (masks, mask_col) {
                (true, Some(c)) => Some(file(cell(c, "mask")?)),
                (false, Some(c)) => record.get(c).filter(|v| !v.is_empty()).map(file),
                (_, None) => None,
            };
            let spacing = match spacing_col.and_then(|c| record.get(c)).filter(|v| !v.is_empty()) {
                None => None,
                Some(v) => {
                    let values: std::result::Result<Vec<f64>, _> = v
                        .split([' ', ',', 'x', ';'])
                        .filter(|s| !s.is_empty())
                        .map(str::parse::<f64>)
                        .collect();
                    let values =
                        values.map_err(|_| bad(line, format!("spacing {v:?} is not a list of numbers")))?;
                    Some(Spacing::new(values).map_err(|e| bad(line, e.to_string()))?)
                }
            };
            let group = match group_col {
                None => None,
                Some(c) => Some(cell(c, "group (the group column needs a label on every line)")?.to_owned()),
            };
            if let Some(first) = seen.insert(id.clone(), scores.clone()) {
                return Err(Error::DuplicateSubject { id, first, second: scores });
            }
            subjects.push(Subject { id, scores, mask, spacing, group });
        }
        if subjects.is_empty() {
            return Err(bad(1, "no subjects listed".into()));
        }
        Ok(Cohort { subjects })
    }

    /// The subjects, in order (sorted by ID when discovered; manifest order otherwise).
    #[must_use]
    pub fn subjects(&self) -> &[Subject] {
        &self.subjects
    }

    /// Number of subjects.
    #[must_use]
    pub fn len(&self) -> usize {
        self.subjects.len()
    }

    /// Whether there is no subject.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.subjects.is_empty()
    }

    fn subject(&self, i: usize) -> Result<&Subject> {
        self.subjects.get(i).ok_or_else(|| Error::InvalidParameter {
            name: "subject",
            value: i.to_string(),
            reason: format!("the cohort has {} subjects", self.subjects.len()),
        })
    }

    /// Shape, precision and geometry of subject `i`'s scores, from the
    /// file's header only.
    ///
    /// # Errors
    /// The file cannot be read or is not a supported image.
    pub fn info(&self, i: usize) -> Result<SubjectInfo> {
        let s = self.subject(i)?;
        let format = Format::of(&s.scores).ok_or_else(|| not_an_image(&s.scores))?;
        let (shape, precision, geometry) = match format {
            Format::Npy => {
                let info = super::image_info(&s.scores)?;
                (info.shape, Precision::of(info.dtype), None)
            }
            Format::Nii | Format::NiiGz => {
                let (shape, precision, g) = nifti_info(&s.scores)?;
                (shape, precision, Some(g))
            }
            Format::Npz => {
                let (shape, precision, g) = npz_info(&s.scores)?;
                (shape, precision, Some(g))
            }
        };
        let geometry = s.spacing.clone().map(Geometry::new).or(geometry);
        Ok(SubjectInfo { format, shape, precision, geometry })
    }

    /// The float type that holds every subject's scores exactly (from the
    /// headers).
    ///
    /// # Errors
    /// A header cannot be read.
    pub fn precision(&self) -> Result<Precision> {
        let mut p = Precision::F32;
        for i in 0..self.len() {
            p = p.max(self.info(i)?.precision);
        }
        Ok(p)
    }

    /// Subject `i`'s scores in the float type `A` and their geometry: the
    /// manifest's spacing, else the NIfTI header's; `None` for a `.npy` file
    /// without a spacing in the manifest (the cohort default applies).
    ///
    /// # Errors
    /// As [`super::read_image`] / [`super::nifti::read_scores`].
    pub fn read_scores<A: ReadFloat>(&self, i: usize) -> Result<(ArrayD<A>, Option<Geometry>)> {
        let s = self.subject(i)?;
        let (scores, geometry) = match Format::of(&s.scores).ok_or_else(|| not_an_image(&s.scores))? {
            Format::Npy => (super::read_image::<A>(&s.scores)?, None),
            Format::Nii | Format::NiiGz => {
                let (a, g) = nifti_scores::<A>(&s.scores)?;
                (a, Some(g))
            }
            Format::Npz => {
                let (a, g) = npz_scores::<A>(&s.scores)?;
                (a, Some(g))
            }
        };
        Ok((scores, s.spacing.clone().map(Geometry::new).or(geometry)))
    }

    /// Subject `i`'s mask file.
    fn mask_path(&self, i: usize) -> Result<&Path> {
        let s = self.subject(i)?;
        s.mask.as_deref().ok_or_else(|| Error::InvalidParameter {
            name: "mask",
            value: s.id.clone(),
            reason: "no mask file for this subject".into(),
        })
    }

    /// Subject `i`'s mask as `0`/`1` bytes chosen by `labels`.
    ///
    /// # Errors
    /// No mask for this subject; as [`super::read_mask_image`] /
    /// [`super::nifti::read_mask`].
    pub fn read_mask(&self, i: usize, labels: impl Into<Coding>) -> Result<ArrayD<u8>> {
        let labels = &labels.into();
        let path = self.mask_path(i)?;
        match Format::of(path).ok_or_else(|| not_an_image(path))? {
            Format::Npy => super::read_mask_image(path, labels),
            Format::Nii | Format::NiiGz => nifti_mask(path, labels),
            Format::Npz => Err(npz_mask(path)),
        }
    }

    /// Compare subject `i`'s score and mask headers (both NIfTI): the
    /// spacing of the spatial axes within a relative 1e-4 and the affine
    /// within 1e-3 mm. Scores saved with an identity affine next to masks
    /// with the scanner's header would otherwise calibrate silently in the
    /// wrong units.
    ///
    /// # Errors
    /// [`Error::Options`] naming both files and what differs; a header that
    /// cannot be read.
    pub fn check_geometry(&self, i: usize) -> Result<()> {
        let s = self.subject(i)?;
        let Some(mask) = &s.mask else { return Ok(()) };
        let nifti = |p: &Path| matches!(Format::of(p), Some(Format::Nii | Format::NiiGz));
        let (scores, _) = like(s)?;
        if !nifti(&scores) || !nifti(mask) {
            return Ok(());
        }
        let (_, _, gs) = nifti_info(&scores)?;
        let (_, _, gm) = nifti_info(mask)?;
        let spacing =
            |g: &Geometry| g.spacing().as_slice().map(|v| v.iter().take(3).copied().collect::<Vec<_>>());
        let (ss, sm) = (spacing(&gs), spacing(&gm));
        let close = |a: f64, b: f64, tol: f64| (a - b).abs() <= tol;
        let spacing_differs = match (&ss, &sm) {
            (Some(a), Some(b)) => {
                a.len() != b.len()
                    || a.iter().zip(b).any(|(&x, &y)| !close(x, y, 1e-4 * x.abs().max(y.abs())))
            }
            _ => false,
        };
        let affine_differs = match (gs.affine(), gm.affine()) {
            (Some(a), Some(b)) => {
                a.iter().flatten().zip(b.iter().flatten()).any(|(&x, &y)| !close(x, y, 1e-3))
            }
            _ => false,
        };
        if !(spacing_differs || affine_differs) {
            return Ok(());
        }
        let what = if spacing_differs {
            format!("voxel spacing {:?} vs {:?}", ss.unwrap_or_default(), sm.unwrap_or_default())
        } else {
            format!(
                "affine {:?} vs {:?}",
                gs.affine().copied().unwrap_or_default(),
                gm.affine().copied().unwrap_or_default()
            )
        };
        Err(Error::Options {
            reason: format!(
                "subject {}: the scores {} and the mask {} have different geometry ({what}); \
                 save the scores with the image's header (or resample one onto the other)",
                s.id,
                s.scores.display(),
                mask.display()
            ),
        })
    }

    /// Subject `i`'s mask or label map as its values (`f64`, unscaled for
    /// NIfTI), e.g. to select several structures from it.
    ///
    /// # Errors
    /// No mask for this subject; the file cannot be read.
    pub fn read_label_map(&self, i: usize) -> Result<ArrayD<f64>> {
        let path = self.mask_path(i)?;
        match Format::of(path).ok_or_else(|| not_an_image(path))? {
            Format::Npy => super::read_image::<f64>(path),
            Format::Nii | Format::NiiGz => nifti_values(path),
            Format::Npz => Err(npz_mask(path)),
        }
    }

    /// The output path for subject `i` in `dir`: `ID` + `suffix` + the
    /// extension of its score file (`.nii.gz` for `.nii.gz` input).
    ///
    /// # Errors
    /// A score file of an unknown format.
    pub fn output_path(&self, i: usize, dir: &Path, suffix: &str) -> Result<PathBuf> {
        let s = self.subject(i)?;
        let (_, format) = like(s)?;
        let name = format!("{}{suffix}{}", s.id, format.extension());
        check_id(&name).map_err(|reason| Error::InvalidParameter {
            name: "subject ID",
            value: s.id.clone(),
            reason,
        })?;
        Ok(dir.join(name))
    }

    /// Check that `dir` can take per-subject outputs: it must not be a
    /// folder holding the cohort's score or mask files (outputs would be
    /// read as subjects by the next run, or replace an input).
    ///
    /// # Errors
    /// [`Error::Options`] naming the folder and the input file in it.
    pub fn check_output_folder(&self, dir: &Path) -> Result<()> {
        let inputs = self.subjects.iter().flat_map(|s| std::iter::once(&s.scores).chain(s.mask.as_ref()));
        for input in inputs {
            if crate::output::is_input_folder(dir, input) {
                return Err(Error::Options {
                    reason: format!(
                        "the output folder {} holds input files ({}); write the sets to another folder",
                        dir.display(),
                        input.display()
                    ),
                });
            }
        }
        Ok(())
    }

    /// A 0/1 `uint8` image written for subject `i` in its own format: NIfTI
    /// with its header and affine (so it overlays on the scan), or `.npy`;
    /// unpublished (see [`super::commit_all`]).
    ///
    /// # Errors
    /// As [`super::write_npy`] / [`super::nifti::mask_output`].
    pub fn mask_output<D: ndarray::Dimension>(
        &self,
        i: usize,
        path: &Path,
        mask: &ArrayRef<u8, D>,
    ) -> Result<Output> {
        match like(self.subject(i)?)? {
            (_, Format::Npy) => super::npy::npy_output(path, mask),
            (like, _) => nifti_mask_output(&like, path, mask),
        }
    }

    /// A `uint8` label map written for subject `i` in its own format (see
    /// [`Cohort::mask_output`]; any values, for [`crate::Sets::label_map`]).
    ///
    /// # Errors
    /// As [`Cohort::mask_output`].
    pub fn label_map_output<D: ndarray::Dimension>(
        &self,
        i: usize,
        path: &Path,
        labels: &ArrayRef<u8, D>,
    ) -> Result<Output> {
        match like(self.subject(i)?)? {
            (_, Format::Npy) => super::npy::npy_output(path, labels),
            (like, _) => nifti_label_map_output(&like, path, labels),
        }
    }

    /// A float image written for subject `i` in its own format (see
    /// [`Cohort::mask_output`]).
    ///
    /// # Errors
    /// As [`Cohort::mask_output`].
    pub fn scores_output<A: Float + super::WriteElement, D: ndarray::Dimension>(
        &self,
        i: usize,
        path: &Path,
        scores: &ArrayRef<A, D>,
    ) -> Result<Output> {
        match like(self.subject(i)?)? {
            (_, Format::Npy) => super::npy::npy_output(path, scores),
            (like, _) => nifti_scores_output(&like, path, scores),
        }
    }
}

fn not_an_image(path: &Path) -> Error {
    file_error(
        path,
        FileProblem::BadHeader {
            reason: "not an image file: expected .npy, .nii, .nii.gz (or nnU-Net's .npz)".into(),
        },
    )
}

fn npz_mask(path: &Path) -> Error {
    file_error(
        path,
        FileProblem::BadHeader {
            reason:
                "an .npz file holds nnU-Net's probabilities, not a mask; give the label maps (e.g. labelsTr)"
                    .into(),
        },
    )
}

/// The file whose header subject `s`'s geometry and outputs follow, and its
/// format: the score file, or for nnU-Net's `.npz` the NIfTI file of the
/// same case beside it.
fn like(s: &Subject) -> Result<(PathBuf, Format)> {
    match Format::of(&s.scores).ok_or_else(|| not_an_image(&s.scores))? {
        Format::Npz => {
            let g = npz_geometry_file(&s.scores)?;
            let format = Format::of(&g).ok_or_else(|| not_an_image(&g))?;
            Ok((g, format))
        }
        format => Ok((s.scores.clone(), format)),
    }
}

/// Shape `(x, y, z, C)`, precision and the geometry of the NIfTI file
/// beside an nnU-Net `.npz`, whose spatial shape must be the NIfTI file's.
#[cfg(feature = "nifti")]
fn npz_info(path: &Path) -> Result<(Vec<usize>, Precision, Geometry)> {
    let info = super::npz::info(path)?;
    let like = super::npz::geometry_file(path)?;
    let h = super::nifti::read_header(&like)?;
    let spatial = &info.shape[..info.shape.len() - 1];
    let nifti_shape: Vec<usize> = h.shape().iter().copied().take(spatial.len()).collect();
    if h.shape().iter().skip(spatial.len()).any(|&d| d != 1) || nifti_shape != spatial {
        return Err(file_error(
            path,
            FileProblem::BadData {
                reason: format!(
                    "the probabilities' spatial shape {spatial:?} (x, y, z) is not that of {} ({:?})",
                    like.display(),
                    h.shape()
                ),
            },
        ));
    }
    Ok((info.shape, Precision::of(info.dtype), h.geometry()))
}

#[cfg(feature = "nifti")]
fn npz_scores<A: ReadFloat>(path: &Path) -> Result<(ArrayD<A>, Geometry)> {
    let (_, _, g) = npz_info(path)?;
    Ok((super::npz::read_probabilities::<A>(path)?, g))
}

#[cfg(feature = "nifti")]
fn npz_geometry_file(path: &Path) -> Result<PathBuf> {
    super::npz::geometry_file(path)
}

#[cfg(not(feature = "nifti"))]
fn npz_info(path: &Path) -> Result<(Vec<usize>, Precision, Geometry)> {
    Err(no_nifti(path))
}

#[cfg(not(feature = "nifti"))]
fn npz_scores<A: ReadFloat>(path: &Path) -> Result<(ArrayD<A>, Geometry)> {
    Err(no_nifti(path))
}

#[cfg(not(feature = "nifti"))]
fn npz_geometry_file(path: &Path) -> Result<PathBuf> {
    Err(no_nifti(path))
}

#[cfg(feature = "nifti")]
fn nifti_info(path: &Path) -> Result<(Vec<usize>, Precision, Geometry)> {
    let h = super::nifti::read_header(path)?;
    Ok((h.shape().to_vec(), h.precision(), h.geometry()))
}

#[cfg(feature = "nifti")]
fn nifti_scores<A: ReadFloat>(path: &Path) -> Result<(ArrayD<A>, Geometry)> {
    let (a, h) = super::nifti::read_scores::<A>(path)?;
    Ok((a, h.geometry()))
}

#[cfg(feature = "nifti")]
fn nifti_values(path: &Path) -> Result<ArrayD<f64>> {
    super::nifti::read_scores::<f64>(path).map(|(a, _)| a)
}

#[cfg(not(feature = "nifti"))]
fn nifti_values(path: &Path) -> Result<ArrayD<f64>> {
    Err(no_nifti(path))
}

#[cfg(feature = "nifti")]
fn nifti_mask(path: &Path, labels: &Coding) -> Result<ArrayD<u8>> {
    super::nifti::read_mask(path, labels).map(|(m, _)| m)
}

#[cfg(feature = "nifti")]
fn nifti_mask_output<D: ndarray::Dimension>(
    like: &Path,
    path: &Path,
    mask: &ArrayRef<u8, D>,
) -> Result<Output> {
    let h = super::nifti::read_header(like)?;
    super::nifti::mask_output(path, mask, &h)
}

#[cfg(feature = "nifti")]
fn nifti_label_map_output<D: ndarray::Dimension>(
    like: &Path,
    path: &Path,
    labels: &ArrayRef<u8, D>,
) -> Result<Output> {
    let h = super::nifti::read_header(like)?;
    super::nifti::label_map_output(path, labels, &h)
}

#[cfg(feature = "nifti")]
fn nifti_scores_output<A: Float, D: ndarray::Dimension>(
    like: &Path,
    path: &Path,
    scores: &ArrayRef<A, D>,
) -> Result<Output> {
    let h = super::nifti::read_header(like)?;
    super::nifti::scores_output(path, scores, &h)
}

#[cfg(not(feature = "nifti"))]
fn no_nifti(path: &Path) -> Error {
    file_error(path, FileProblem::BadHeader { reason: "NIfTI files need the crate feature `nifti`".into() })
}

#[cfg(not(feature = "nifti"))]
fn nifti_info(path: &Path) -> Result<(Vec<usize>, Precision, Geometry)> {
    Err(no_nifti(path))
}

#[cfg(not(feature = "nifti"))]
fn nifti_scores<A: ReadFloat>(path: &Path) -> Result<(ArrayD<A>, Geometry)> {
    Err(no_nifti(path))
}

#[cfg(not(feature = "nifti"))]
fn nifti_mask(path: &Path, _: &Coding) -> Result<ArrayD<u8>> {
    Err(no_nifti(path))
}

#[cfg(not(feature = "nifti"))]
fn nifti_mask_output<D: ndarray::Dimension>(like: &Path, _: &Path, _: &ArrayRef<u8, D>) -> Result<Output> {
    Err(no_nifti(like))
}

#[cfg(not(feature = "nifti"))]
fn nifti_label_map_output<D: ndarray::Dimension>(
    like: &Path,
    _: &Path,
    _: &ArrayRef<u8, D>,
) -> Result<Output> {
    Err(no_nifti(like))
}

#[cfg(not(feature = "nifti"))]
fn nifti_scores_output<A: Float, D: ndarray::Dimension>(
    like: &Path,
    _: &Path,
    _: &ArrayRef<A, D>,
) -> Result<Output> {
    Err(no_nifti(like))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn touch(dir: &Path, name: &str) {
        crate::io::write_npy(dir.join(name), &Array2::<u8>::zeros((2, 3))).unwrap();
    }

    #[test]
    fn pairing_by_folder_glob_and_suffixes() {
        let d = tempfile::tempdir().unwrap();
        let (s, m) = (d.path().join("scores"), d.path().join("masks"));
        std::fs::create_dir_all(&s).unwrap();
        std::fs::create_dir_all(&m).unwrap();
        for id in ["b", "a", "c"] {
            touch(&s, &format!("{id}_prob.npy"));
            touch(&m, &format!("{id}_seg.npy"));
        }
        std::fs::write(s.join("notes.txt"), "ignored").unwrap();
        let p = Pairing::new("_prob", "_seg");
        let c = Cohort::discover(s.to_str().unwrap(), Some(m.to_str().unwrap()), &p).unwrap();
        let ids: Vec<&str> = c.subjects().iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(c.subjects()[0].mask.as_deref(), Some(m.join("a_seg.npy").as_path()));
        let g = format!("{}/*_prob.npy", s.display());
        assert_eq!(Cohort::discover(&g, Some(m.to_str().unwrap()), &p).unwrap(), c);
        // without the suffixes: paired by the common suffixes of the names
        let auto =
            Cohort::discover(s.to_str().unwrap(), Some(m.to_str().unwrap()), &Pairing::default()).unwrap();
        assert_eq!(auto, c);
        // scores and masks in one folder
        for id in ["a", "b", "c"] {
            std::fs::copy(m.join(format!("{id}_seg.npy")), s.join(format!("{id}_seg.npy"))).unwrap();
        }
        let same = Cohort::discover(s.to_str().unwrap(), Some(s.to_str().unwrap()), &p).unwrap();
        assert_eq!(same.len(), 3);
        // the same folder without suffixes: each file would be its own mask
        let e = Cohort::discover(s.to_str().unwrap(), Some(s.to_str().unwrap()), &Pairing::default())
            .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Options { .. }), "{msg}");
        assert!(
            msg.contains("its own mask") && msg.contains("--scores-suffix _prob --masks-suffix _seg"),
            "{msg}"
        );
        // names that do not pair: the error says which, and how they might
        let only = d.path().join("only");
        std::fs::create_dir_all(&only).unwrap();
        touch(&only, "a_prob.npy");
        touch(&only, "z_prob.npy");
        let e = Cohort::discover(only.to_str().unwrap(), Some(m.to_str().unwrap()), &Pairing::default())
            .unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("z_prob") && msg.contains("--scores-suffix _prob --masks-suffix _seg"), "{msg}");
        // a missing mask is named
        std::fs::remove_file(m.join("b_seg.npy")).unwrap();
        let e = Cohort::discover(s.to_str().unwrap(), Some(m.to_str().unwrap()), &p).unwrap_err();
        assert_eq!(
            e,
            Error::UnpairedSubjects { scores_only: vec!["b".into()], masks_only: vec![], hint: None }
        );
        // a duplicate ID (npy and nii of one subject) is an error
        std::fs::write(s.join("a_prob.nii"), b"x").unwrap();
        assert!(matches!(
            Cohort::discover(s.to_str().unwrap(), None, &p),
            Err(Error::DuplicateSubject { .. })
        ));
        assert!(matches!(
            Cohort::discover(&format!("{}/*.nothing", s.display()), None, &p),
            Err(Error::NoSubjects { .. })
        ));
    }

    #[test]
    fn manifests() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), "x.npy");
        touch(d.path(), "y.npy");
        let m = d.path().join("m.csv");
        std::fs::write(&m, "id,scores,mask,spacing\ns1,x.npy,y.npy,0.5 2\ns2, x.npy ,y.npy,\"1,3\"\n")
            .unwrap();
        let c = Cohort::from_manifest(&m, true).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c.subjects()[0].scores, d.path().join("x.npy"));
        assert_eq!(c.subjects()[1].spacing, Some(Spacing::new(vec![1.0, 3.0]).unwrap()));
        assert_eq!(c.info(0).unwrap().geometry.unwrap().spacing(), &Spacing::new(vec![0.5, 2.0]).unwrap());
        for (text, says) in [
            ("id,scores\ns1,x.npy\n", "no mask column"),
            ("id,scores,mask\ns1,x.npy,\n", "line 2: no mask"),
            ("id,scores,mask,spacing\ns1,x.npy,y.npy,1 zero\n", "line 2: spacing"),
            ("id,scores,mask\ns1,x.npy,y.npy\ns1,y.npy,y.npy\n", "twice"),
            ("name,file\n", "id and scores"),
        ] {
            std::fs::write(&m, text).unwrap();
            let e = Cohort::from_manifest(&m, true).unwrap_err().to_string();
            assert!(e.contains(says) && !e.contains('\n'), "{text}: {e}");
        }
        // commands without masks ignore the column
        std::fs::write(&m, "id,scores\ns1,x.npy\n").unwrap();
        assert_eq!(Cohort::from_manifest(&m, false).unwrap().subjects()[0].mask, None);
    }
}
