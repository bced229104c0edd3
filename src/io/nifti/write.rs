//! Writing NIfTI images: masks, label maps and scores, each with the
//! geometry of a reference header ([`NiftiHeader`]), as atomic outputs
//! ([`Output`]) that are published by `commit` (or together with other
//! outputs by [`commit_all`](crate::io::commit_all)).

use std::io::Write;
use std::path::Path;

use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{ArrayRef, Dimension};

use super::file::to_file_order;
use super::header::NiftiHeader;
use super::{is_gz_path, write_failed};
use crate::error::{Error, Result};
use crate::float::Float;
use crate::io::{in_file, Output};
use crate::mask::MaskValue;

/// Bytes written at a time.
const CHUNK: usize = 1 << 20;

/// Check that an output of `shape` fits the reference header `like`: the
/// same spatial axes (the first three), 1 to 7 axes, and sizes the version
/// can store.
fn check_output_shape(path: &Path, shape: &[usize], like: &NiftiHeader) -> Result<()> {
    let spatial = |s: &[usize]| s[..s.len().min(3)].to_vec();
    if spatial(shape) != spatial(&like.shape) {
        return Err(in_file(
            path,
            Error::ShapeMismatch {
                what: "image written vs its reference NIfTI header",
                image: None,
                expected: like.shape.clone(),
                found: shape.to_vec(),
            },
        ));
    }
    let max = if like.version == 1 { i16::MAX as usize } else { i64::MAX as usize };
    if shape.is_empty() || shape.len() > 7 || shape.iter().any(|&n| n == 0 || n > max) {
        return Err(write_failed(
            path,
            &format!("shape {shape:?}: a NIfTI-{} image has 1 to 7 axes of 1 to {max} voxels", like.version),
        ));
    }
    Ok(())
}

/// Write header and data (produced by `data`) to an unpublished output,
/// gzip-compressed when the path ends in `.gz`.
fn output(
    path: &Path,
    header: &[u8],
    data: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<Output> {
    let out = Output::create(path)?;
    let fill = |w: &mut dyn Write| -> std::io::Result<()> {
        w.write_all(header)?;
        data(w)
    };
    if is_gz_path(path) {
        let mut gz = GzEncoder::new(out, Compression::fast());
        fill(&mut gz).map_err(|e| write_failed(path, &e))?;
        gz.finish().map_err(|e| write_failed(path, &e))
    } else {
        let mut out = out;
        fill(&mut out).map_err(|e| write_failed(path, &e))?;
        Ok(out)
    }
}

/// A mask as a `uint8` 0/1 NIfTI image with the geometry of `like`,
/// written but not yet published: [`Output::commit`] it, or publish it with
/// other outputs by [`commit_all`](crate::io::commit_all). See [`write_mask`].
///
/// # Errors
/// As [`write_mask`].
pub fn mask_output<M: MaskValue, D: Dimension>(
    path: impl AsRef<Path>,
    mask: &ArrayRef<M, D>,
    like: &NiftiHeader,
) -> Result<Output> {
    let path = path.as_ref();
    check_output_shape(path, mask.shape(), like)?;
    crate::mask::check_mask(mask).map_err(|e| in_file(path, e))?;
    let header = like.for_output(mask.shape(), 2, 8, (0.0, 1.0));
    let c = mask.as_standard_layout();
    let bytes = match c.as_slice() {
        Some(s) => to_file_order(s, mask.shape(), |v| u8::from(v.is_object())),
        None => c.t().iter().map(|v| u8::from(v.is_object())).collect(),
    };
    drop(c);
    output(path, &header, |w| w.write_all(&bytes))
}

/// A `uint8` label map (the values as they are; `cal_min`/`cal_max` 0 and
/// the largest label) with the geometry of `like`, unpublished: the sets
/// as one image a viewer colours by label ([`crate::Sets::label_map`]).
///
/// # Errors
/// As [`mask_output`], without the 0/1 check.
pub fn label_map_output<D: Dimension>(
    path: impl AsRef<Path>,
    labels: &ArrayRef<u8, D>,
    like: &NiftiHeader,
) -> Result<Output> {
    let path = path.as_ref();
    check_output_shape(path, labels.shape(), like)?;
    let max = labels.iter().copied().max().unwrap_or(0);
    let header = like.for_output(labels.shape(), 2, 8, (0.0, f64::from(max)));
    let c = labels.as_standard_layout();
    let bytes = match c.as_slice() {
        Some(s) => to_file_order(s, labels.shape(), |v| v),
        None => c.t().iter().copied().collect(),
    };
    drop(c);
    output(path, &header, |w| w.write_all(&bytes))
}

/// Write a mask (bool, or integers or floats holding 0/1) as a `uint8` 0/1
/// NIfTI image with the geometry of `like` (see the [module docs](super)),
/// atomically; `cal_min`/`cal_max` are 0/1. The array is indexed
/// `(x, y, z, ...)`; its first three axes must be those of `like`.
///
/// # Errors
/// [`Error::InFile`] with [`Error::ShapeMismatch`] for other spatial axes,
/// or [`Error::NonBinaryMask`] for a value other than 0/1;
/// [`FileProblem::Write`](crate::error::FileProblem::Write) for a shape the version cannot store or a failed
/// write (the destination is then untouched).
pub fn write_mask<M: MaskValue, D: Dimension>(
    path: impl AsRef<Path>,
    mask: &ArrayRef<M, D>,
    like: &NiftiHeader,
) -> Result<()> {
    mask_output(path, mask, like)?.commit()
}

/// Write a label map (`uint8` labels, e.g. 0 background, 1 and 2 two
/// structures) as a `uint8` NIfTI image with the geometry of `like`,
/// atomically; `cal_min`/`cal_max` span the labels.
///
/// ```
/// use confseg::io::nifti::{read_mask, write_labels, NiftiHeader};
/// use confseg::io::Labels;
/// use confseg::image::Geometry;
/// use ndarray::array;
/// let dir = tempfile::tempdir().unwrap();
/// let p = dir.path().join("seg.nii.gz");
/// let labels = array![[[0u8, 1], [2, 2]]];
/// write_labels(&p, &labels, &NiftiHeader::new(&[1, 2, 2], &Geometry::default())?)?;
/// let (rim, _) = read_mask(&p, &Labels::select([2])?)?;
/// assert_eq!(rim, array![[[0u8, 0], [1, 1]]].into_dyn());
/// # Ok::<(), confseg::Error>(())
/// ```
///
/// # Errors
/// As [`write_mask`], without the 0/1 check.
pub fn write_labels<D: Dimension>(
    path: impl AsRef<Path>,
    labels: &ArrayRef<u8, D>,
    like: &NiftiHeader,
) -> Result<()> {
    label_map_output(path, labels, like)?.commit()
}

/// Scores as a `float32` (for `f32`) or `float64` (for `f64`) NIfTI image
/// with the geometry of `like`, written but not yet published. See
/// [`write_scores`].
///
/// # Errors
/// As [`write_scores`].
pub fn scores_output<A: Float, D: Dimension>(
    path: impl AsRef<Path>,
    scores: &ArrayRef<A, D>,
    like: &NiftiHeader,
) -> Result<Output> {
    let path = path.as_ref();
    check_output_shape(path, scores.shape(), like)?;
    let single = A::NAME == "float32";
    let header = if single {
        like.for_output(scores.shape(), 16, 32, (0.0, 0.0))
    } else {
        like.for_output(scores.shape(), 64, 64, (0.0, 0.0))
    };
    let c = scores.as_standard_layout();
    let values: Vec<A> = match c.as_slice() {
        Some(s) => to_file_order(s, scores.shape(), |v| v),
        None => c.t().iter().copied().collect(),
    };
    drop(c);
    let big = like.big_endian;
    output(path, &header, |w| {
        let mut buf = Vec::with_capacity(CHUNK.min(values.len() * 8));
        for chunk in values.chunks(CHUNK / 8) {
            buf.clear();
            for &v in chunk {
                let x = v.to_f64_lossless();
                #[allow(clippy::cast_possible_truncation)]
                match (single, big) {
                    (true, false) => buf.extend_from_slice(&(x as f32).to_le_bytes()),
                    (true, true) => buf.extend_from_slice(&(x as f32).to_be_bytes()),
                    (false, false) => buf.extend_from_slice(&x.to_le_bytes()),
                    (false, true) => buf.extend_from_slice(&x.to_be_bytes()),
                }
            }
            w.write_all(&buf)?;
        }
        Ok(())
    })
}

/// Write scores as a `float32` (for `f32`) or `float64` (for `f64`) NIfTI
/// image with the geometry of `like` (see the [module docs](super)),
/// atomically; values are stored as they are (no scaling; infinities and
/// NaN kept). The array is indexed `(x, y, z, ...)`; its first three axes
/// must be those of `like`.
///
/// # Errors
/// [`Error::InFile`] with [`Error::ShapeMismatch`] for other spatial axes;
/// [`FileProblem::Write`](crate::error::FileProblem::Write) for a shape the version cannot store or a failed
/// write (the destination is then untouched).
pub fn write_scores<A: Float, D: Dimension>(
    path: impl AsRef<Path>,
    scores: &ArrayRef<A, D>,
    like: &NiftiHeader,
) -> Result<()> {
    scores_output(path, scores, like)?.commit()
}
