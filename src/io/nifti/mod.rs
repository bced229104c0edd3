//! NIfTI images (feature `nifti`): single-file NIfTI-1 and NIfTI-2,
//! `.nii` and `.nii.gz`, read into arrays indexed `(x, y, z, ...)` with
//! their voxel spacing and affine, and masks or scores written back in the
//! space of the image they came from.
//!
//! ```
//! use confseg::io::nifti::{self, NiftiHeader};
//! use confseg::io::{Labels, Precision};
//! use confseg::Spacing;
//! use confseg::image::Geometry;
//! use ndarray::Array3;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (scan, seg) = (dir.path().join("scores.nii.gz"), dir.path().join("seg.nii.gz"));
//! // a header for new data: shape (x, y, z), spacing in mm, sform = diag(spacing)
//! let like = NiftiHeader::new(&[4, 5, 6], &Geometry::new(Spacing::new(vec![0.75, 0.75, 2.5])?))?;
//! let scores = Array3::from_shape_fn((4, 5, 6), |(x, y, z)| (x + 10 * y + 100 * z) as f32);
//! nifti::write_scores(&scan, &scores, &like)?;
//!
//! let (s, header) = nifti::read_scores::<f32>(&scan)?;
//! assert_eq!(s, scores.clone().into_dyn()); // s[[x, y, z]], like nibabel's get_fdata()
//! assert_eq!(header.spacing().as_slice(), Some(&[0.75, 0.75, 2.5][..]));
//! assert_eq!(header.precision(), Precision::F32);
//! assert_eq!(header.affine()[2], [0.0, 0.0, 2.5, 0.0]);
//!
//! // a mask written with the scan's geometry, then read as a label map
//! nifti::write_mask(&seg, &scores.mapv(|v| v > 250.0), &header)?;
//! let (m, mh) = nifti::read_mask(&seg, &Labels::Binary)?;
//! assert_eq!((m[[1, 4, 3]], m[[0, 0, 0]]), (1, 0)); // 341 > 250, 0 <= 250
//! assert_eq!(mh.affine(), header.affine());
//! # Ok::<(), confseg::Error>(())
//! ```
//!
//! **Why a reader of its own.** The `nifti` crate (0.18) reads NIfTI-1
//! only (no NIfTI-2), keeps dimensions as `u16`, and needs `nalgebra` for
//! the affine. The format is small: this module reads and writes it by
//! hand with `flate2` for gzip, bounds every size a header declares before
//! allocating anything, and reports every problem in one line naming the
//! file.
//!
//! **What is read.**
//!
//! * Single files of either NIfTI version in either byte order (detected
//!   from `sizeof_hdr`), gzip-compressed or not (detected from the content,
//!   so a misnamed `.nii` that is gzip is read too). Extensions are skipped
//!   (data starts at `vox_offset`); bytes after the data are allowed.
//!   `.hdr`/`.img` pairs are refused.
//! * Datatypes uint8, int8, uint16, int16, uint32, int32, uint64, int64,
//!   float32 and float64, as the [`Dtype`](super::Dtype) of the same name; other
//!   datatypes (complex, RGB, float128) are refused by name and code.
//! * **Axes** are NIfTI's `(i, j, k, ...)`, i.e. `(x, y, z, ...)` as in
//!   nibabel's `get_fdata()`: axis 0 is the one that varies fastest in the
//!   file. Arrays are returned in standard (row-major) layout. The shape is
//!   `dim[1..=dim[0]]`, without trailing axes of length 1 beyond the third
//!   (a `(64, 64, 32, 1)` volume is 3-D); a longer 4th axis (class scores,
//!   time) is kept.
//! * **Spacing** ([`NiftiHeader::spacing`]) is `pixdim[1..=3]` of the
//!   spatial axes in millimetres (`xyzt_units` metres, millimetres, microns,
//!   or unknown, taken as millimetres); axes after the third get spacing 1.
//!   Spatial voxel sizes must be positive and finite.
//! * **Affine** ([`NiftiHeader::affine`]): as nibabel's `img.affine`: the
//!   sform if `sform_code` is 1 to 5, else the qform (quaternion, `qfac`
//!   from `pixdim[0]`) if `qform_code` is, else nibabel's fallback from
//!   `pixdim` (x flipped, origin at the centre of the volume). In the
//!   file's units, like nibabel's.
//! * **Scaling**: `scl_slope`/`scl_inter` apply to scores as in nibabel
//!   (a slope of 0 or not finite means none; 1 and 0 mean none); scaled
//!   values are computed in `f64` and their [`Precision`] is `F64`. Masks
//!   and label maps ([`read_mask`]) are read unscaled: labels are the stored
//!   integers (or floats holding integers).
//!
//! **Bounds.** Nothing is allocated before the header's sizes are
//! checked: the voxel count times the datatype's size must be
//! addressable; in a `.nii` the data must lie within the file; a `.nii.gz`
//! may not declare more than 1100 times its compressed size (deflate
//! expands at most 1032:1), and its buffer grows only with the bytes the
//! stream really holds. A gzip stream is read to its end, so its checksum
//! is verified. `bitpix` is not read: the datatype decides.
//!
//! **Writing** ([`write_mask`], [`write_scores`]) copies the geometry of a
//! reference header (`dim` from the array, `pixdim`, `xyzt_units`, qform
//! and sform), sets the datatype, `scl_slope = 1`, `scl_inter = 0`, resets
//! the intent, drops extensions, and keeps the NIfTI version and byte order
//! of the reference. A path ending in `.gz` is gzip-compressed (level 1,
//! as nibabel). Outputs are atomic ([`Output`](super::Output));
//! [`mask_output`] and [`scores_output`] return them unpublished, for
//! [`commit_all`](super::commit_all).
//!
//! **Where things are.** `header` holds the byte layouts of the two
//! versions and turns a header into a [`NiftiHeader`] (dimensions,
//! spacing, affine, scaling); `file` opens a plain or gzip file, reads its
//! data within the header's bounds and reorders it between file order
//! (first axis fastest) and row-major arrays; `write` builds the header of
//! an output from a reference and writes it atomically. This file holds
//! the reading functions that tie them together.

// the header: layouts, fields, interpretation
mod header;
// reading a file: bounds, data, voxel order
mod file;
// writing outputs with a reference's geometry
mod write;

use std::path::Path;

use ndarray::ArrayD;

use super::npy::binarize;
use super::{file_error, in_file, Precision, ReadFloat};
use crate::error::{Error, FileProblem, Result};
use crate::mask::Coding;
use file::{open, read_data, shaped, to_row_major, unravel_file_order};

pub use header::{AffineSource, NiftiHeader};
pub use write::{label_map_output, mask_output, scores_output, write_labels, write_mask, write_scores};

/// Whether `path` names a NIfTI file by its extension: `.nii` or
/// `.nii.gz` (any case).
///
/// ```
/// use confseg::io::nifti::is_nifti;
/// assert!(is_nifti("brain.nii") && is_nifti("a/b/seg.NII.GZ"));
/// assert!(!is_nifti("scores.npy") && !is_nifti("pair.hdr") && !is_nifti("x.gz"));
/// ```
#[must_use]
pub fn is_nifti(path: impl AsRef<Path>) -> bool {
    let name = path.as_ref().file_name().map(|n| n.to_string_lossy().to_lowercase()).unwrap_or_default();
    name.ends_with(".nii") || name.ends_with(".nii.gz")
}

fn is_gz_path(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("gz"))
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    file_error(path, FileProblem::BadNiftiHeader { reason: reason.into() })
}

fn not_nifti(path: &Path, reason: impl Into<String>) -> Error {
    file_error(path, FileProblem::NotNifti { reason: reason.into() })
}

fn write_failed(path: &Path, e: &dyn std::fmt::Display) -> Error {
    file_error(path, FileProblem::Write { message: e.to_string() })
}

/// The header of a NIfTI file, reading nothing else (for `.nii.gz`, only
/// the start of the stream is decompressed).
///
/// # Errors
/// [`Error::File`]: the file cannot be opened or read
/// ([`FileProblem::Io`]), is not a single-file NIfTI image
/// ([`FileProblem::NotNifti`]), its header is out of range
/// ([`FileProblem::BadNiftiHeader`]: dimensions, `vox_offset`, voxel sizes,
/// units, scaling, affine, or a size the file cannot hold), its datatype
/// is not read ([`FileProblem::UnsupportedNiftiDatatype`]), or it is
/// shorter than its header or data ([`FileProblem::NiftiTruncated`]).
pub fn read_header(path: impl AsRef<Path>) -> Result<NiftiHeader> {
    open(path.as_ref()).map(|o| o.header)
}

/// Read a score image `(x, y, z, ...)` in the float type `A`, scaled by
/// `scl_slope`/`scl_inter` as nibabel does, with its header. Use `f32` for
/// files whose [`NiftiHeader::precision`] is `F32`, else `f64`. NaN is not
/// checked here (the calibrator and the fitted sets reject it).
///
/// # Errors
/// As [`read_header`]; [`FileProblem::NeedsFloat64`] for `A = f32` and
/// values that need `f64` (32- and 64-bit integers, scaled values);
/// [`FileProblem::InexactValue`] for a 64-bit integer beyond 2^53;
/// [`FileProblem::BadData`] for a corrupt gzip stream.
pub fn read_scores<A: ReadFloat>(path: impl AsRef<Path>) -> Result<(ArrayD<A>, NiftiHeader)> {
    let path = path.as_ref();
    let (bytes, header) = read_data(path, |h| {
        if A::NAME == "float32" && h.precision() == Precision::F64 {
            return Err(file_error(path, FileProblem::NeedsFloat64 { values: h.describe_values() }));
        }
        Ok(())
    })?;
    let inexact = |(p, value): (usize, String)| {
        file_error(path, FileProblem::InexactValue { value, index: unravel_file_order(p, &header.shape) })
    };
    let values = match header.scaling {
        None => {
            let mut v: Vec<A> = Vec::new();
            A::decode_scores(&bytes, header.dtype, header.big_endian, &mut v).map_err(inexact)?;
            drop(bytes);
            to_row_major(&v, &header.shape, |x| x)
        }
        Some((slope, inter)) => {
            let mut v: Vec<f64> = Vec::new();
            f64::decode_scores(&bytes, header.dtype, header.big_endian, &mut v).map_err(inexact)?;
            drop(bytes);
            // A is f64 here (checked above)
            to_row_major(&v, &header.shape, |x| A::from_f64_lossy(x * slope + inter))
        }
    };
    Ok((shaped(path, &header.shape, values)?, header))
}

/// Read a mask or label map `(x, y, z, ...)` as `0`/`1` bytes, the object
/// voxels chosen by `labels`, with its header. Values are the stored ones
/// (`scl_slope`/`scl_inter` are not applied to labels); floats holding
/// integers are labels too.
///
/// # Errors
/// As [`read_header`]; [`Error::InFile`] wrapping [`Error::NonBinaryMask`]
/// (for [`Labels::Binary`](crate::mask::Labels::Binary): a value other than 0 or 1) or
/// [`Error::InvalidLabel`] (a value that is not an integer), with the voxel
/// `(x, y, z, ...)` and the value.
pub fn read_mask(path: impl AsRef<Path>, labels: impl Into<Coding>) -> Result<(ArrayD<u8>, NiftiHeader)> {
    let path = path.as_ref();
    let labels = &labels.into();
    let (bytes, header) = read_data(path, |_| Ok(()))?;
    let flat = binarize(&bytes, header.dtype, header.big_endian, labels).map_err(|(p, e)| {
        let index = unravel_file_order(p, &header.shape);
        in_file(
            path,
            match e {
                Error::NonBinaryMask { value, .. } => Error::NonBinaryMask { image: None, index, value },
                Error::InvalidLabel { value, .. } => Error::InvalidLabel { image: None, index, value },
                other => other,
            },
        )
    })?;
    drop(bytes);
    let values = to_row_major(&flat, &header.shape, |x| x);
    Ok((shaped(path, &header.shape, values)?, header))
}

#[cfg(test)]
mod tests;
