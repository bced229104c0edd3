//! NIfTI images (feature `nifti`): single-file NIfTI-1 and NIfTI-2,
//! `.nii` and `.nii.gz`, read into arrays indexed `(x, y, z, ...)` with
//! their voxel spacing and affine, and masks or scores written back in the
//! space of the image they came from.
//!
//! ```
//! use confseg::io::nifti::{self, NiftiHeader};
//! use confseg::io::{Labels, Precision};
//! use confseg::{Geometry, Spacing};
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
//!   float32 and float64, as the [`Dtype`] of the same name; other
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
//! as nibabel). Outputs
//! are atomic ([`Output`]); [`mask_output`] and [`scores_output`] return
//! them unpublished, for [`commit_all`](super::commit_all).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use ndarray::{Array, ArrayD, ArrayRef, Dimension, IxDyn};

use super::npy::binarize;
use super::{file_error, in_file, os_error, Dtype, Output, Precision, ReadFloat};
use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
use crate::image::{Affine, Geometry, Spacing};
use crate::mask::{Coding, MaskValue};

/// Largest expansion of a `.nii.gz` file accepted: deflate cannot expand
/// more than 1032:1, plus room for the gzip framing of tiny files.
const MAX_GZIP_RATIO: u64 = 1100;

/// Bytes written at a time.
const CHUNK: usize = 1 << 20;

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

// ---------------------------------------------------------------------------
// Header layout

/// Storage type of a header field.
#[derive(Debug, Clone, Copy)]
enum Ty {
    U8,
    I16,
    I32,
    I64,
    F32,
    F64,
}

impl Ty {
    fn size(self) -> usize {
        match self {
            Ty::U8 => 1,
            Ty::I16 => 2,
            Ty::I32 | Ty::F32 => 4,
            Ty::I64 | Ty::F64 => 8,
        }
    }
}

/// A header field (or the first element of an array field).
#[derive(Debug, Clone, Copy)]
struct Field {
    at: usize,
    ty: Ty,
}

const fn field(at: usize, ty: Ty) -> Field {
    Field { at, ty }
}

/// Where the fields this module uses are in one NIfTI version's header.
#[derive(Debug)]
struct Layout {
    /// `sizeof_hdr`.
    size: usize,
    datatype: Field,
    bitpix: Field,
    /// `dim[0..8]`.
    dim: Field,
    /// `intent_p1..3`.
    intent_p: Field,
    intent_code: Field,
    /// `pixdim[0..8]`.
    pixdim: Field,
    vox_offset: Field,
    scl_slope: Field,
    scl_inter: Field,
    cal_max: Field,
    cal_min: Field,
    xyzt_units: Field,
    qform_code: Field,
    sform_code: Field,
    /// `quatern_b, quatern_c, quatern_d, qoffset_x, qoffset_y, qoffset_z`.
    quatern: Field,
    /// `srow_x[4], srow_y[4], srow_z[4]`.
    srow: Field,
    /// `intent_name[16]`.
    intent_name: usize,
    /// `glmax, glmin` (NIfTI-1 only).
    glmax: Option<Field>,
    /// The magic string: 4 bytes (`n+1\0`), or 8 for NIfTI-2 (`n+2\0\r\n\x1a\n`).
    magic: usize,
}

const V1: Layout = Layout {
    size: 348,
    datatype: field(70, Ty::I16),
    bitpix: field(72, Ty::I16),
    dim: field(40, Ty::I16),
    intent_p: field(56, Ty::F32),
    intent_code: field(68, Ty::I16),
    pixdim: field(76, Ty::F32),
    vox_offset: field(108, Ty::F32),
    scl_slope: field(112, Ty::F32),
    scl_inter: field(116, Ty::F32),
    cal_max: field(124, Ty::F32),
    cal_min: field(128, Ty::F32),
    xyzt_units: field(123, Ty::U8),
    qform_code: field(252, Ty::I16),
    sform_code: field(254, Ty::I16),
    quatern: field(256, Ty::F32),
    srow: field(280, Ty::F32),
    intent_name: 328,
    glmax: Some(field(140, Ty::I32)),
    magic: 344,
};

const V2: Layout = Layout {
    size: 540,
    datatype: field(12, Ty::I16),
    bitpix: field(14, Ty::I16),
    dim: field(16, Ty::I64),
    intent_p: field(80, Ty::F64),
    intent_code: field(504, Ty::I32),
    pixdim: field(104, Ty::F64),
    vox_offset: field(168, Ty::I64),
    scl_slope: field(176, Ty::F64),
    scl_inter: field(184, Ty::F64),
    cal_max: field(192, Ty::F64),
    cal_min: field(200, Ty::F64),
    xyzt_units: field(500, Ty::I32),
    qform_code: field(344, Ty::I32),
    sform_code: field(348, Ty::I32),
    quatern: field(352, Ty::F64),
    srow: field(400, Ty::F64),
    intent_name: 508,
    glmax: None,
    magic: 4,
};

const NIFTI2_EOL: [u8; 4] = [0x0D, 0x0A, 0x1A, 0x0A];

/// `N` bytes at `at` in little-endian order (zeros past the end, which the
/// fixed layouts never reach).
fn bytes_at<const N: usize>(raw: &[u8], at: usize, big: bool) -> [u8; N] {
    let mut b = [0u8; N];
    if let Some(s) = raw.get(at..at + N) {
        b.copy_from_slice(s);
    }
    if big {
        b.reverse();
    }
    b
}

/// Element `i` of an integer field (a float field is truncated).
fn get_int(raw: &[u8], big: bool, fd: Field, i: usize) -> i64 {
    let at = fd.at + i * fd.ty.size();
    match fd.ty {
        Ty::U8 => i64::from(bytes_at::<1>(raw, at, big)[0]),
        Ty::I16 => i64::from(i16::from_le_bytes(bytes_at(raw, at, big))),
        Ty::I32 => i64::from(i32::from_le_bytes(bytes_at(raw, at, big))),
        Ty::I64 => i64::from_le_bytes(bytes_at(raw, at, big)),
        #[allow(clippy::cast_possible_truncation)]
        Ty::F32 | Ty::F64 => get_float(raw, big, fd, i) as i64,
    }
}

/// Element `i` of a field, as `f64` (exact for every float field).
fn get_float(raw: &[u8], big: bool, fd: Field, i: usize) -> f64 {
    let at = fd.at + i * fd.ty.size();
    match fd.ty {
        Ty::F32 => f64::from(f32::from_le_bytes(bytes_at(raw, at, big))),
        Ty::F64 => f64::from_le_bytes(bytes_at(raw, at, big)),
        #[allow(clippy::cast_precision_loss)]
        _ => get_int(raw, big, fd, i) as f64,
    }
}

/// Store `v` in element `i` of a field, in the header's byte order
/// (integers saturate to the field's type; callers check ranges).
fn put(raw: &mut [u8], big: bool, fd: Field, i: usize, v: f64) {
    let at = fd.at + i * fd.ty.size();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let mut b: Vec<u8> = match fd.ty {
        Ty::U8 => vec![v as u8],
        Ty::I16 => (v as i16).to_le_bytes().to_vec(),
        Ty::I32 => (v as i32).to_le_bytes().to_vec(),
        Ty::I64 => (v as i64).to_le_bytes().to_vec(),
        Ty::F32 => (v as f32).to_le_bytes().to_vec(),
        Ty::F64 => v.to_le_bytes().to_vec(),
    };
    if big {
        b.reverse();
    }
    if let Some(s) = raw.get_mut(at..at + b.len()) {
        s.copy_from_slice(&b);
    }
}

/// The crate's dtype for a NIfTI datatype code, or the code's name.
fn dtype_of(code: i16) -> std::result::Result<Dtype, &'static str> {
    Ok(match code {
        2 => Dtype::U8,
        4 => Dtype::I16,
        8 => Dtype::I32,
        16 => Dtype::F32,
        64 => Dtype::F64,
        256 => Dtype::I8,
        512 => Dtype::U16,
        768 => Dtype::U32,
        1024 => Dtype::I64,
        1280 => Dtype::U64,
        0 => return Err("none"),
        1 => return Err("binary"),
        32 => return Err("complex64"),
        128 => return Err("RGB"),
        255 => return Err("all"),
        1536 => return Err("float128"),
        1792 => return Err("complex128"),
        2048 => return Err("complex256"),
        2304 => return Err("RGBA"),
        _ => return Err("unknown"),
    })
}

/// Where an image's affine comes from ([`NiftiHeader::affine_source`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AffineSource {
    /// The sform (`srow_x`, `srow_y`, `srow_z`; `sform_code` 1 to 5).
    Sform,
    /// The qform (quaternion and offsets; `qform_code` 1 to 5, `sform_code` not).
    Qform,
    /// Neither: nibabel's fallback from `pixdim`, with x flipped and the
    /// origin at the centre of the volume.
    Pixdim,
}

/// A NIfTI header: what the file holds and where its voxels are.
///
/// Read by [`read_header`] (and returned with the data by [`read_scores`]
/// and [`read_mask`]); given to [`write_mask`] and [`write_scores`] as
/// the reference whose geometry an output keeps. Made for new data by
/// [`NiftiHeader::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    version: u8,
    big_endian: bool,
    /// The header as stored (348 or 540 bytes, the file's byte order).
    raw: Vec<u8>,
    dtype: Dtype,
    shape: Vec<usize>,
    spacing: Spacing,
    affine: Affine,
    affine_source: AffineSource,
    scaling: Option<(f64, f64)>,
    vox_offset: u64,
    data_bytes: usize,
}

impl NiftiHeader {
    /// A NIfTI-1 header (little-endian, millimetres) for new data of this
    /// shape `(x, y, z, ...)` and geometry: `pixdim` from the spacing (which
    /// needs one entry per axis, or unit spacing), and the sform (code 2,
    /// "aligned") from the affine, or `diag(spacing)` when there is none.
    /// The datatype is set when an image is written. NIfTI-1 stores
    /// `pixdim` and the sform as `float32`: [`spacing`](Self::spacing) and
    /// [`affine`](Self::affine) are the stored (rounded) values, as a reader
    /// of the written file sees them.
    ///
    /// Like a header read from a file, it gives axes after the third
    /// spacing 1.
    ///
    /// # Errors
    /// [`Error::InvalidParameter`] for a shape of no axes or more than 7,
    /// or an axis of 0 or more than 32767 voxels; [`Error::InvalidSpacing`]
    /// for a spacing of another length; [`Error::File`] (for the path
    /// `(new NIfTI header)`) with [`FileProblem::BadNiftiHeader`] for a
    /// spacing or affine that `float32` cannot hold.
    pub fn new(shape: &[usize], geometry: &Geometry) -> Result<NiftiHeader> {
        let invalid = |reason: &str| Error::InvalidParameter {
            name: "NIfTI shape",
            value: format!("{shape:?}"),
            reason: reason.to_owned(),
        };
        if shape.is_empty() || shape.len() > 7 {
            return Err(invalid("a NIfTI image has 1 to 7 axes"));
        }
        if shape.iter().any(|&n| n == 0 || n > i16::MAX as usize) {
            return Err(invalid("NIfTI-1 axes hold 1 to 32767 voxels"));
        }
        let spacing = geometry.spacing().for_ndim(shape.len())?;
        let l = &V1;
        let mut raw = vec![0u8; l.size];
        raw[..4].copy_from_slice(&348i32.to_le_bytes());
        raw[l.magic..l.magic + 4].copy_from_slice(b"n+1\0");
        put(&mut raw, false, l.datatype, 0, 16.0);
        put(&mut raw, false, l.bitpix, 0, 32.0);
        #[allow(clippy::cast_precision_loss)]
        for k in 0..8 {
            let d = if k == 0 { shape.len() } else { shape.get(k - 1).copied().unwrap_or(1) };
            put(&mut raw, false, l.dim, k, d as f64);
            let p = if k == 0 { 1.0 } else { spacing.get(k - 1).copied().unwrap_or(1.0) };
            put(&mut raw, false, l.pixdim, k, p);
        }
        put(&mut raw, false, l.vox_offset, 0, 352.0);
        put(&mut raw, false, l.scl_slope, 0, 1.0);
        put(&mut raw, false, l.xyzt_units, 0, 2.0);
        put(&mut raw, false, l.sform_code, 0, 2.0);
        let affine = geometry.affine().copied().unwrap_or_else(|| {
            let mut a = [[0.0; 4]; 4];
            for (r, row) in a.iter_mut().enumerate() {
                row[r] = if r < 3 { spacing.get(r).copied().unwrap_or(1.0) } else { 1.0 };
            }
            a
        });
        for (r, row) in affine.iter().take(3).enumerate() {
            for (c, &v) in row.iter().enumerate() {
                put(&mut raw, false, l.srow, 4 * r + c, v);
            }
        }
        parse(Path::new("(new NIfTI header)"), raw, false, 1)
    }

    /// The NIfTI version: 1 or 2.
    #[must_use]
    pub fn version(&self) -> u8 {
        self.version
    }

    /// Whether the file is big-endian (outputs keep its byte order).
    #[must_use]
    pub fn is_big_endian(&self) -> bool {
        self.big_endian
    }

    /// The image shape `(x, y, z, ...)`, without trailing axes of length 1
    /// beyond the third.
    #[must_use]
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The stored element type.
    #[must_use]
    pub fn dtype(&self) -> Dtype {
        self.dtype
    }

    /// Voxel spacing in millimetres, one entry per axis of [`shape`](Self::shape)
    /// (1 for axes after the third).
    #[must_use]
    pub fn spacing(&self) -> &Spacing {
        &self.spacing
    }

    /// The voxel-to-world affine, as nibabel's `img.affine`.
    #[must_use]
    pub fn affine(&self) -> &Affine {
        &self.affine
    }

    /// Where the affine comes from: sform, qform or `pixdim`.
    #[must_use]
    pub fn affine_source(&self) -> AffineSource {
        self.affine_source
    }

    /// Spacing and affine together, for [`Image::with_geometry`](crate::Image::with_geometry).
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        // the affine is checked to be finite when the header is parsed
        let g = Geometry::new(self.spacing.clone());
        g.clone().with_affine(self.affine).unwrap_or(g)
    }

    /// `(scl_slope, scl_inter)` when scores are scaled, `None` when they
    /// are read as stored.
    #[must_use]
    pub fn scaling(&self) -> Option<(f64, f64)> {
        self.scaling
    }

    /// The float type that holds the scores exactly: the dtype's
    /// ([`Precision::of`]), or `F64` for scaled scores.
    #[must_use]
    pub fn precision(&self) -> Precision {
        if self.scaling.is_some() {
            Precision::F64
        } else {
            Precision::of(self.dtype)
        }
    }

    fn layout(&self) -> &'static Layout {
        if self.version == 1 {
            &V1
        } else {
            &V2
        }
    }

    /// What the scores are, for messages.
    fn describe_values(&self) -> String {
        match self.scaling {
            Some((s, i)) => format!("{} scaled by scl_slope {s}, scl_inter {i}", self.dtype),
            None => self.dtype.name().to_owned(),
        }
    }

    /// The header of an output of `shape` and datatype `code` (`bitpix`
    /// bits) with this header's geometry, followed by an empty extender.
    fn for_output(&self, shape: &[usize], code: i16, bitpix: i16, cal: (f64, f64)) -> Vec<u8> {
        let l = self.layout();
        let big = self.big_endian;
        let mut raw = self.raw.clone();
        #[allow(clippy::cast_precision_loss)]
        for k in 0..8 {
            let d = if k == 0 { shape.len() } else { shape.get(k - 1).copied().unwrap_or(1) };
            put(&mut raw, big, l.dim, k, d as f64);
            if (4..=shape.len()).contains(&k) {
                let p = get_float(&raw, big, l.pixdim, k);
                if !(p.is_finite() && p > 0.0) {
                    put(&mut raw, big, l.pixdim, k, 1.0);
                }
            }
        }
        put(&mut raw, big, l.datatype, 0, f64::from(code));
        put(&mut raw, big, l.bitpix, 0, f64::from(bitpix));
        #[allow(clippy::cast_precision_loss)]
        put(&mut raw, big, l.vox_offset, 0, (l.size + 4) as f64);
        put(&mut raw, big, l.scl_slope, 0, 1.0);
        put(&mut raw, big, l.scl_inter, 0, 0.0);
        put(&mut raw, big, l.cal_min, 0, cal.0);
        put(&mut raw, big, l.cal_max, 0, cal.1);
        put(&mut raw, big, l.intent_code, 0, 0.0);
        for i in 0..3 {
            put(&mut raw, big, l.intent_p, i, 0.0);
        }
        if let Some(s) = raw.get_mut(l.intent_name..l.intent_name + 16) {
            s.fill(0);
        }
        if let Some(g) = l.glmax {
            put(&mut raw, big, g, 0, 0.0);
            put(&mut raw, big, g, 1, 0.0);
        }
        raw.extend_from_slice(&[0; 4]);
        raw
    }
}

// ---------------------------------------------------------------------------
// Reading

/// Check and interpret a whole header (`raw` is 348 or 540 bytes).
fn parse(path: &Path, raw: Vec<u8>, big: bool, version: u8) -> Result<NiftiHeader> {
    let l = if version == 1 { &V1 } else { &V2 };
    // magic
    let magic = raw.get(l.magic..l.magic + 4).unwrap_or(&[]);
    let (single, pair): (&[u8], &[u8]) =
        if version == 1 { (b"n+1\0", b"ni1\0") } else { (b"n+2\0", b"ni2\0") };
    if magic == pair {
        return Err(not_nifti(
            path,
            format!(
                "its magic string 'ni{version}' marks the header of a .hdr/.img pair; \
                 convert it to .nii (e.g. with nibabel) to read it"
            ),
        ));
    }
    if magic != single {
        let shown: String =
            magic.iter().flat_map(|&b| std::ascii::escape_default(b)).map(char::from).collect();
        return Err(not_nifti(
            path,
            format!(
                "sizeof_hdr says NIfTI-{version} but the magic string is '{shown}', not 'n+{version}\\0'"
            ),
        ));
    }
    if version == 2 {
        let eol = raw.get(8..12).unwrap_or(&[]);
        if eol != NIFTI2_EOL && eol != [0; 4] {
            return Err(not_nifti(
                path,
                "the NIfTI-2 magic string does not end in \\r\\n\\x1a\\n (was the file transferred as text?)",
            ));
        }
    }
    // datatype
    #[allow(clippy::cast_possible_truncation)]
    let code = get_int(&raw, big, l.datatype, 0) as i16;
    let dtype = dtype_of(code)
        .map_err(|name| file_error(path, FileProblem::UnsupportedNiftiDatatype { name, code }))?;
    // dimensions
    let ndim = get_int(&raw, big, l.dim, 0);
    if !(1..=7).contains(&ndim) {
        return Err(bad(path, format!("dim[0] = {ndim}: the number of dimensions must be 1 to 7")));
    }
    let ndim = usize::try_from(ndim).unwrap_or(1);
    let mut dims = Vec::with_capacity(ndim);
    for k in 1..=ndim {
        let d = get_int(&raw, big, l.dim, k);
        if d < 0 {
            return Err(bad(path, format!("dim[{k}] = {d} is negative")));
        }
        if d == 0 {
            return Err(bad(path, format!("dim[{k}] = 0: the image has no voxels")));
        }
        dims.push(usize::try_from(d).map_err(|_| bad(path, format!("dim[{k}] = {d} is too large")))?);
    }
    let too_large =
        || bad(path, format!("dimensions {dims:?} of {dtype} need more bytes than this machine can address"));
    let voxels = dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(too_large)?;
    let data_bytes =
        voxels.checked_mul(dtype.size()).filter(|&b| u64::try_from(b).is_ok()).ok_or_else(too_large)?;
    let mut shape = dims.clone();
    while shape.len() > 3 && shape.last() == Some(&1) {
        shape.pop();
    }
    // where the data starts
    let vox_offset = match l.vox_offset.ty {
        Ty::F32 => {
            let v = get_float(&raw, big, l.vox_offset, 0);
            if v.is_finite() && v < 0.0 {
                return Err(bad(path, format!("vox_offset = {v} is negative")));
            }
            if !(v.is_finite() && v.fract() == 0.0 && v < 9e15) {
                return Err(bad(path, format!("vox_offset = {v} is not a whole number of bytes")));
            }
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let v = v as u64;
            v
        }
        _ => {
            let v = get_int(&raw, big, l.vox_offset, 0);
            u64::try_from(v).map_err(|_| bad(path, format!("vox_offset = {v} is negative")))?
        }
    };
    if vox_offset < l.size as u64 {
        return Err(bad(path, format!("vox_offset = {vox_offset} points inside the {}-byte header", l.size)));
    }
    // spacing
    let unit = get_int(&raw, big, l.xyzt_units, 0) & 0x07;
    let scale = match unit {
        0 | 2 => 1.0,
        1 => 1000.0,
        3 => 0.001,
        u => {
            return Err(bad(
                path,
                format!("xyzt_units: space unit code {u} is not defined (0 unknown, 1 m, 2 mm, 3 um)"),
            ))
        }
    };
    let pixdim = |k: usize| get_float(&raw, big, l.pixdim, k);
    let mut spacing = Vec::with_capacity(shape.len());
    for k in 1..=shape.len() {
        if k <= 3 {
            let p = pixdim(k);
            if !(p.is_finite() && p > 0.0) {
                return Err(bad(
                    path,
                    format!(
                        "pixdim[{k}] = {p}: the voxel size along {} must be positive and finite",
                        ["x", "y", "z"][k - 1]
                    ),
                ));
            }
            spacing.push(p * scale);
        } else {
            spacing.push(1.0);
        }
    }
    let spacing = Spacing::new(spacing.clone())
        .map_err(|_| bad(path, format!("pixdim {spacing:?} (in mm) is out of range for voxel sizes")))?;
    // scaling, as nibabel
    let slope = get_float(&raw, big, l.scl_slope, 0);
    let inter = get_float(&raw, big, l.scl_inter, 0);
    let scaling = if slope == 0.0 || !slope.is_finite() {
        None
    } else if !inter.is_finite() {
        return Err(bad(path, format!("scl_slope = {slope} with scl_inter = {inter}, which is not finite")));
    } else if slope == 1.0 && inter == 0.0 {
        None
    } else {
        Some((slope, inter))
    };
    // affine, as nibabel's get_best_affine
    let valid_code = |c: i64| (1..=5).contains(&c);
    let (affine, affine_source) = if valid_code(get_int(&raw, big, l.sform_code, 0)) {
        let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
        for (r, row) in a.iter_mut().take(3).enumerate() {
            for (c, v) in row.iter_mut().enumerate() {
                *v = get_float(&raw, big, l.srow, 4 * r + c);
            }
        }
        (a, AffineSource::Sform)
    } else if valid_code(get_int(&raw, big, l.qform_code, 0)) {
        let q = |i| get_float(&raw, big, l.quatern, i);
        // nibabel fixes pixdim[1..=3] on load: 0 becomes 1, negatives their absolute value
        let vox = [1, 2, 3].map(|k| if pixdim(k) == 0.0 { 1.0 } else { pixdim(k).abs() });
        let qfac = if pixdim(0) == -1.0 { -1.0 } else { 1.0 };
        let eps = if version == 1 { f64::from(f32::EPSILON) } else { f64::EPSILON };
        let a = qform(q(0), q(1), q(2), [q(3), q(4), q(5)], vox, qfac, 3.0 * eps).ok_or_else(|| {
            bad(
                path,
                format!("the qform quaternion (b, c, d) = ({}, {}, {}) has a norm above 1", q(0), q(1), q(2)),
            )
        })?;
        (a, AffineSource::Qform)
    } else {
        let zooms: Vec<f64> = (1..=ndim).map(pixdim).collect();
        (base_affine(&dims, &zooms), AffineSource::Pixdim)
    };
    if affine.iter().flatten().any(|v| !v.is_finite()) {
        let which = match affine_source {
            AffineSource::Sform => "sform",
            AffineSource::Qform => "qform",
            AffineSource::Pixdim => "pixdim",
        };
        return Err(bad(path, format!("the {which} affine has an entry that is not finite")));
    }
    Ok(NiftiHeader {
        version,
        big_endian: big,
        raw,
        dtype,
        shape,
        spacing,
        affine,
        affine_source,
        scaling,
        vox_offset,
        data_bytes,
    })
}

/// The qform affine (nibabel's `get_qform`): rotation from the quaternion
/// `(a, b, c, d)` with `a = sqrt(1 - b² - c² - d²)` (0 when within
/// `threshold` of 0), times `diag(vox)` with the last column times `qfac`,
/// and the offsets. `None` if `1 - b² - c² - d²` is below `-threshold`.
fn qform(
    b: f64,
    c: f64,
    d: f64,
    offset: [f64; 3],
    vox: [f64; 3],
    qfac: f64,
    threshold: f64,
) -> Option<Affine> {
    let w2 = 1.0 - (b * b + c * c + d * d);
    let a = if w2.abs() < threshold {
        0.0
    } else if w2 < 0.0 || w2.is_nan() {
        return None;
    } else {
        w2.sqrt()
    };
    let n = a * a + b * b + c * c + d * d;
    let r = if n < f64::EPSILON {
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    } else {
        let s = 2.0 / n;
        let (x, y, z) = (b * s, c * s, d * s);
        let (wx, wy, wz) = (a * x, a * y, a * z);
        let (xx, xy, xz) = (b * x, b * y, b * z);
        let (yy, yz, zz) = (c * y, c * z, d * z);
        [
            [1.0 - (yy + zz), xy - wz, xz + wy],
            [xy + wz, 1.0 - (xx + zz), yz - wx],
            [xz - wy, yz + wx, 1.0 - (xx + yy)],
        ]
    };
    let scale = [vox[0], vox[1], vox[2] * qfac];
    let mut out = [[0.0, 0.0, 0.0, 1.0]; 4];
    for i in 0..3 {
        for j in 0..3 {
            out[i][j] = r[i][j] * scale[j];
        }
        out[i][3] = offset[i];
    }
    Some(out)
}

/// nibabel's fallback affine (`shape_zoom_affine` with x flipped): the
/// first three dims and zooms (padded with 1), origin at the centre.
#[allow(clippy::cast_precision_loss)]
fn base_affine(dims: &[usize], zooms: &[f64]) -> Affine {
    let mut a = [[0.0, 0.0, 0.0, 1.0]; 4];
    for (i, row) in a.iter_mut().take(3).enumerate() {
        let n = dims.get(i).copied().unwrap_or(1) as f64;
        let z = zooms.get(i).copied().unwrap_or(1.0) * if i == 0 { -1.0 } else { 1.0 };
        row[i] = z;
        row[3] = -((n - 1.0) / 2.0) * z;
    }
    a
}

/// An open NIfTI file positioned after its header.
struct Opened {
    reader: Box<dyn Read>,
    gz: bool,
    file_len: u64,
    header: NiftiHeader,
}

/// The error for a failed read: a corrupt or truncated gzip stream, or the OS's.
fn read_error(path: &Path, gz: bool, e: &std::io::Error) -> Error {
    use std::io::ErrorKind::{InvalidData, InvalidInput, UnexpectedEof};
    if gz && matches!(e.kind(), InvalidData | InvalidInput | UnexpectedEof) {
        file_error(path, FileProblem::BadData { reason: format!("the gzip stream is corrupt ({e})") })
    } else {
        os_error(path, e)
    }
}

/// `read` until `buf` is full or the stream ends; the number of bytes
/// read, and whether the stream was cut short (a truncated gzip stream).
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<(usize, bool)> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok((n, true)),
            Err(e) => return Err(e),
        }
    }
    Ok((n, false))
}

/// Open `path`, read and check its header, and check the declared data
/// size against the file's size.
fn open(path: &Path) -> Result<Opened> {
    let mut file = File::open(path).map_err(|e| os_error(path, &e))?;
    let file_len = file.metadata().map_err(|e| os_error(path, &e))?.len();
    let mut magic = [0u8; 2];
    let (got, _) = fill(&mut file, &mut magic).map_err(|e| os_error(path, &e))?;
    file.seek(SeekFrom::Start(0)).map_err(|e| os_error(path, &e))?;
    let gz = got == 2 && magic == [0x1f, 0x8b];
    let mut reader: Box<dyn Read> = if gz {
        Box::new(MultiGzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::with_capacity(1 << 16, file))
    };
    let mut first = [0u8; 4];
    let (got, cut) = fill(&mut reader, &mut first).map_err(|e| read_error(path, gz, &e))?;
    if cut {
        return Err(file_error(
            path,
            FileProblem::BadData {
                reason: format!("the gzip stream ends after {got} bytes (a truncated file)"),
            },
        ));
    }
    if got < 4 {
        let what = if gz { "its gzip stream" } else { "the file" };
        return Err(not_nifti(path, format!("{what} holds {got} bytes")));
    }
    let (version, big, size) = match (i32::from_le_bytes(first), i32::from_be_bytes(first)) {
        (348, _) => (1, false, V1.size),
        (540, _) => (2, false, V2.size),
        (_, 348) => (1, true, V1.size),
        (_, 540) => (2, true, V2.size),
        (n, _) => {
            return Err(not_nifti(path, format!("sizeof_hdr is {n}, not 348 (NIfTI-1) or 540 (NIfTI-2)")))
        }
    };
    let mut raw = vec![0u8; size];
    raw[..4].copy_from_slice(&first);
    let (got, _) = fill(&mut reader, &mut raw[4..]).map_err(|e| read_error(path, gz, &e))?;
    if got + 4 < size {
        return Err(file_error(
            path,
            FileProblem::NiftiTruncated {
                part: "header",
                expected_bytes: size as u64,
                found_bytes: (got + 4) as u64,
            },
        ));
    }
    let header = parse(path, raw, big, version)?;
    let data = header.data_bytes as u64;
    if gz {
        let end = header.vox_offset.saturating_add(data);
        let max = file_len.saturating_mul(MAX_GZIP_RATIO);
        if end > max {
            return Err(bad(
                path,
                format!(
                    "it declares {end} bytes (vox_offset {} + {data} bytes of data), more than a \
                     {file_len}-byte gzip file can hold",
                    header.vox_offset
                ),
            ));
        }
    } else {
        if header.vox_offset > file_len {
            return Err(bad(
                path,
                format!("vox_offset = {} is past the end of the file ({file_len} bytes)", header.vox_offset),
            ));
        }
        let found = file_len - header.vox_offset;
        if found < data {
            return Err(file_error(
                path,
                FileProblem::NiftiTruncated { part: "data", expected_bytes: data, found_bytes: found },
            ));
        }
    }
    Ok(Opened { reader, gz, file_len, header })
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

/// The raw data bytes (file order) and the header; `check` may refuse
/// the header before the data is read.
fn read_data(path: &Path, check: impl FnOnce(&NiftiHeader) -> Result<()>) -> Result<(Vec<u8>, NiftiHeader)> {
    let Opened { mut reader, gz, file_len, header } = open(path)?;
    check(&header)?;
    let size = header.layout().size as u64;
    let expected_bytes = header.data_bytes as u64;
    let truncated = |found_bytes| {
        file_error(path, FileProblem::NiftiTruncated { part: "data", expected_bytes, found_bytes })
    };
    let skip = header.vox_offset - size;
    let skipped = std::io::copy(&mut (&mut reader).take(skip), &mut std::io::sink())
        .map_err(|e| read_error(path, gz, &e))?;
    if skipped < skip {
        return Err(truncated(0));
    }
    // Bounded by the file's size in `open` (or 1100 times it for gzip, of
    // which memory grows only with what the stream really holds).
    let cap = if gz {
        usize::try_from(file_len.saturating_mul(64)).map_or(header.data_bytes, |c| c.min(header.data_bytes))
    } else {
        header.data_bytes
    };
    let mut data = Vec::new();
    data.try_reserve_exact(cap)
        .map_err(|_| Error::OutOfMemory { bytes: cap as u64, what: "a NIfTI volume" })?;
    match (&mut reader).take(expected_bytes).read_to_end(&mut data) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(read_error(path, gz, &e)),
    }
    if data.len() < header.data_bytes {
        return Err(truncated(data.len() as u64));
    }
    if gz {
        // to the end of the stream, which checks its CRC and length
        std::io::copy(&mut reader, &mut std::io::sink()).map_err(|e| read_error(path, gz, &e))?;
    }
    Ok((data, header))
}

/// The multi-index `(x, y, z, ...)` of flat position `p` in file order
/// (first axis fastest).
fn unravel_file_order(mut p: usize, shape: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .map(|&n| {
            let i = p % n.max(1);
            p /= n.max(1);
            i
        })
        .collect()
}

/// `src` holds an array of `shape` in file order (first axis fastest); the
/// same array in row-major order, each element mapped by `map`. A tiled
/// transposition: the first and the last axis in blocks, so that reads and
/// writes both stay within a few cache lines.
fn to_row_major<S: Copy, T: Copy>(src: &[S], shape: &[usize], map: impl Fn(S) -> T) -> Vec<T> {
    const B: usize = 32;
    let n = src.len();
    let nd = shape.len();
    let Some(&first) = src.first() else { return Vec::new() };
    if nd < 2 || shape.iter().filter(|&&s| s > 1).count() <= 1 || shape.iter().product::<usize>() != n {
        return src.iter().map(|&v| map(v)).collect();
    }
    // strides: file order (first axis fastest) and row-major
    let mut fs = vec![1usize; nd];
    let mut cs = vec![1usize; nd];
    for k in 1..nd {
        fs[k] = fs[k - 1] * shape[k - 1];
        cs[nd - 1 - k] = cs[nd - k] * shape[nd - k];
    }
    let (nx, nl) = (shape[0], shape[nd - 1]);
    let (sx, sl) = (cs[0], fs[nd - 1]);
    let mid = &shape[1..nd - 1];
    let mut idx = vec![0usize; mid.len()];
    let mut out = vec![map(first); n];
    loop {
        let (mut bs, mut bd) = (0, 0);
        for (j, &i) in idx.iter().enumerate() {
            bs += i * fs[j + 1];
            bd += i * cs[j + 1];
        }
        for x0 in (0..nx).step_by(B) {
            for l0 in (0..nl).step_by(B) {
                for x in x0..(x0 + B).min(nx) {
                    let d = bd + x * sx;
                    for l in l0..(l0 + B).min(nl) {
                        out[d + l] = map(src[bs + x + l * sl]);
                    }
                }
            }
        }
        let mut j = 0;
        loop {
            if j == idx.len() {
                return out;
            }
            idx[j] += 1;
            if idx[j] < mid[j] {
                break;
            }
            idx[j] = 0;
            j += 1;
        }
    }
}

/// The inverse of [`to_row_major`]: a row-major array of `shape` in file order.
fn to_file_order<S: Copy, T: Copy>(src: &[S], shape: &[usize], map: impl Fn(S) -> T) -> Vec<T> {
    let reversed: Vec<usize> = shape.iter().rev().copied().collect();
    to_row_major(src, &reversed, map)
}

fn shaped<T>(path: &Path, shape: &[usize], values: Vec<T>) -> Result<ArrayD<T>> {
    Array::from_shape_vec(IxDyn(shape), values).map_err(|_| {
        file_error(path, FileProblem::BadData { reason: "data length does not match the shape".into() })
    })
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

// ---------------------------------------------------------------------------
// Writing

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
/// other outputs by [`commit_all`](super::commit_all). See [`write_mask`].
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
/// NIfTI image with the geometry of `like` (see the [module docs](self)),
/// atomically; `cal_min`/`cal_max` are 0/1. The array is indexed
/// `(x, y, z, ...)`; its first three axes must be those of `like`.
///
/// # Errors
/// [`Error::InFile`] with [`Error::ShapeMismatch`] for other spatial axes,
/// or [`Error::NonBinaryMask`] for a value other than 0/1;
/// [`FileProblem::Write`] for a shape the version cannot store or a failed
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
/// use confseg::Geometry;
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
/// image with the geometry of `like` (see the [module docs](self)),
/// atomically; values are stored as they are (no scaling; infinities and
/// NaN kept). The array is indexed `(x, y, z, ...)`; its first three axes
/// must be those of `like`.
///
/// # Errors
/// [`Error::InFile`] with [`Error::ShapeMismatch`] for other spatial axes;
/// [`FileProblem::Write`] for a shape the version cannot store or a failed
/// write (the destination is then untouched).
pub fn write_scores<A: Float, D: Dimension>(
    path: impl AsRef<Path>,
    scores: &ArrayRef<A, D>,
    like: &NiftiHeader,
) -> Result<()> {
    scores_output(path, scores, like)?.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mask::Labels;
    use ndarray::{array, Array3, Array4, ShapeBuilder};

    /// A NIfTI file built by hand from literal offsets (independent of the
    /// layouts above).
    #[derive(Clone)]
    struct Spec {
        version: u8,
        big: bool,
        code: i16,
        dims: Vec<i64>,
        dim0: Option<i64>,
        pixdim: [f64; 8],
        xyzt: u8,
        slope: f64,
        inter: f64,
        qform_code: i16,
        sform_code: i16,
        quatern: [f64; 6],
        srow: [f64; 12],
        ext: usize,
        vox_offset: Option<f64>,
        magic: Option<Vec<u8>>,
    }

    fn put_bytes(buf: &mut [u8], at: usize, le: &[u8], big: bool) {
        let mut b = le.to_vec();
        if big {
            b.reverse();
        }
        buf[at..at + b.len()].copy_from_slice(&b);
    }

    fn size_of_code(code: i16) -> usize {
        match code {
            2 | 256 => 1,
            4 | 512 => 2,
            8 | 16 | 768 => 4,
            _ => 8,
        }
    }

    impl Spec {
        fn new(version: u8, code: i16, dims: &[i64]) -> Spec {
            Spec {
                version,
                big: false,
                code,
                dims: dims.to_vec(),
                dim0: None,
                pixdim: [1.0; 8],
                xyzt: 2,
                slope: 0.0,
                inter: 0.0,
                qform_code: 0,
                sform_code: 0,
                quatern: [0.0; 6],
                srow: [0.0; 12],
                ext: 0,
                vox_offset: None,
                magic: None,
            }
        }

        fn header(&self) -> Vec<u8> {
            let big = self.big;
            let dim0 = self.dim0.unwrap_or(self.dims.len() as i64);
            let dims: Vec<i64> =
                std::iter::once(dim0).chain((0..7).map(|k| self.dims.get(k).copied().unwrap_or(1))).collect();
            let bitpix = (size_of_code(self.code) * 8) as i16;
            if self.version == 1 {
                let mut h = vec![0u8; 348];
                let vox = self.vox_offset.unwrap_or((352 + self.ext) as f64);
                put_bytes(&mut h, 0, &348i32.to_le_bytes(), big);
                for (k, &d) in dims.iter().enumerate() {
                    put_bytes(&mut h, 40 + 2 * k, &(d as i16).to_le_bytes(), big);
                }
                put_bytes(&mut h, 70, &self.code.to_le_bytes(), big);
                put_bytes(&mut h, 72, &bitpix.to_le_bytes(), big);
                for (k, &p) in self.pixdim.iter().enumerate() {
                    put_bytes(&mut h, 76 + 4 * k, &(p as f32).to_le_bytes(), big);
                }
                put_bytes(&mut h, 108, &(vox as f32).to_le_bytes(), big);
                put_bytes(&mut h, 112, &(self.slope as f32).to_le_bytes(), big);
                put_bytes(&mut h, 116, &(self.inter as f32).to_le_bytes(), big);
                h[123] = self.xyzt;
                put_bytes(&mut h, 252, &self.qform_code.to_le_bytes(), big);
                put_bytes(&mut h, 254, &self.sform_code.to_le_bytes(), big);
                for (i, &q) in self.quatern.iter().enumerate() {
                    put_bytes(&mut h, 256 + 4 * i, &(q as f32).to_le_bytes(), big);
                }
                for (i, &s) in self.srow.iter().enumerate() {
                    put_bytes(&mut h, 280 + 4 * i, &(s as f32).to_le_bytes(), big);
                }
                h[344..348].copy_from_slice(self.magic.as_deref().unwrap_or(b"n+1\0"));
                h
            } else {
                let mut h = vec![0u8; 540];
                let vox = self.vox_offset.unwrap_or((544 + self.ext) as f64) as i64;
                put_bytes(&mut h, 0, &540i32.to_le_bytes(), big);
                h[4..12].copy_from_slice(self.magic.as_deref().unwrap_or(b"n+2\0\r\n\x1a\n"));
                put_bytes(&mut h, 12, &self.code.to_le_bytes(), big);
                put_bytes(&mut h, 14, &bitpix.to_le_bytes(), big);
                for (k, &d) in dims.iter().enumerate() {
                    put_bytes(&mut h, 16 + 8 * k, &d.to_le_bytes(), big);
                }
                for (k, &p) in self.pixdim.iter().enumerate() {
                    put_bytes(&mut h, 104 + 8 * k, &p.to_le_bytes(), big);
                }
                put_bytes(&mut h, 168, &vox.to_le_bytes(), big);
                put_bytes(&mut h, 176, &self.slope.to_le_bytes(), big);
                put_bytes(&mut h, 184, &self.inter.to_le_bytes(), big);
                put_bytes(&mut h, 344, &i32::from(self.qform_code).to_le_bytes(), big);
                put_bytes(&mut h, 348, &i32::from(self.sform_code).to_le_bytes(), big);
                for (i, &q) in self.quatern.iter().enumerate() {
                    put_bytes(&mut h, 352 + 8 * i, &q.to_le_bytes(), big);
                }
                for (i, &s) in self.srow.iter().enumerate() {
                    put_bytes(&mut h, 400 + 8 * i, &s.to_le_bytes(), big);
                }
                put_bytes(&mut h, 500, &i32::from(self.xyzt).to_le_bytes(), big);
                h
            }
        }

        /// Header, extender, extension bytes, then `values` (file order) in the datatype.
        fn file(&self, values: &[f64]) -> Vec<u8> {
            let mut out = self.header();
            out.extend_from_slice(if self.ext > 0 { &[1, 0, 0, 0] } else { &[0, 0, 0, 0] });
            out.extend(std::iter::repeat_n(0xAB, self.ext));
            out.extend(encode(values, self.code, self.big));
            out
        }
    }

    fn encode(values: &[f64], code: i16, big: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for &v in values {
            let le: Vec<u8> = match code {
                2 => vec![v as u8],
                256 => (v as i8).to_le_bytes().to_vec(),
                4 => (v as i16).to_le_bytes().to_vec(),
                512 => (v as u16).to_le_bytes().to_vec(),
                8 => (v as i32).to_le_bytes().to_vec(),
                768 => (v as u32).to_le_bytes().to_vec(),
                1024 => (v as i64).to_le_bytes().to_vec(),
                1280 => (v as u64).to_le_bytes().to_vec(),
                16 => (v as f32).to_le_bytes().to_vec(),
                64 => v.to_le_bytes().to_vec(),
                _ => vec![0; 8],
            };
            let mut b = le;
            if big {
                b.reverse();
            }
            out.extend(b);
        }
        out
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    /// Values of `a` in file order (first axis fastest).
    fn file_order(a: &ArrayD<f64>) -> Vec<f64> {
        a.t().iter().copied().collect()
    }

    fn problem(e: Error) -> FileProblem {
        match e {
            Error::File { problem, .. } => problem,
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    /// Every error message is one line and names the file.
    fn one_line_naming(e: &Error, p: &Path) -> String {
        let msg = e.to_string();
        assert!(!msg.contains('\n'), "{msg}");
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        msg
    }

    const CODES: [(i16, Dtype); 10] = [
        (2, Dtype::U8),
        (4, Dtype::I16),
        (8, Dtype::I32),
        (16, Dtype::F32),
        (64, Dtype::F64),
        (256, Dtype::I8),
        (512, Dtype::U16),
        (768, Dtype::U32),
        (1024, Dtype::I64),
        (1280, Dtype::U64),
    ];

    #[test]
    fn every_datatype_version_byte_order_and_compression() {
        let dir = tempfile::tempdir().unwrap();
        for (code, dtype) in CODES {
            let signed = !matches!(dtype, Dtype::U8 | Dtype::U16 | Dtype::U32 | Dtype::U64);
            // distinct values per voxel: reading them back checks the axis order
            let want = Array3::from_shape_fn((3, 4, 2), |(x, y, z)| {
                (x + 3 * y + 12 * z) as f64 - if signed { 5.0 } else { 0.0 }
            })
            .into_dyn();
            for version in [1, 2] {
                for big in [false, true] {
                    for gz in [false, true] {
                        let mut spec = Spec::new(version, code, &[3, 4, 2]);
                        spec.big = big;
                        let bytes = spec.file(&file_order(&want));
                        let p = dir.path().join(if gz { "t.nii.gz" } else { "t.nii" });
                        std::fs::write(&p, if gz { gzip(&bytes) } else { bytes }).unwrap();
                        let what = format!("{dtype} v{version} big={big} gz={gz}");
                        let (a, h) = read_scores::<f64>(&p).unwrap();
                        assert_eq!(a, want, "{what}");
                        assert!(a.is_standard_layout());
                        assert_eq!(
                            (h.dtype(), h.version(), h.is_big_endian(), h.shape()),
                            (dtype, version, big, &[3, 4, 2][..]),
                            "{what}"
                        );
                        assert_eq!(read_header(&p).unwrap(), h, "{what}");
                        if Precision::of(dtype) == Precision::F32 {
                            assert_eq!(read_scores::<f32>(&p).unwrap().0, want.mapv(|v| v as f32), "{what}");
                        } else {
                            let e = read_scores::<f32>(&p).unwrap_err();
                            assert_eq!(
                                problem(e),
                                FileProblem::NeedsFloat64 { values: dtype.name().into() },
                                "{what}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn extreme_values_and_inexact_integers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.nii");
        // float32 bits survive, infinities included
        let f = [0.1_f32, -1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, -0.0];
        let spec = Spec::new(1, 16, &[6]);
        let mut bytes = spec.header();
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
        std::fs::write(&p, &bytes).unwrap();
        let (a, _) = read_scores::<f32>(&p).unwrap();
        assert!(a.iter().zip(&f).all(|(x, y)| x.to_bits() == y.to_bits()));
        // an int64 beyond 2^53 is refused, with its voxel (x, y)
        let spec = Spec::new(2, 1024, &[2, 2]);
        let mut bytes = spec.header();
        bytes.extend_from_slice(&[0; 4]);
        for v in [0_i64, 1, 9_007_199_254_740_993, 3] {
            bytes.extend(v.to_le_bytes());
        }
        std::fs::write(&p, &bytes).unwrap();
        assert_eq!(
            problem(read_scores::<f64>(&p).unwrap_err()),
            FileProblem::InexactValue { value: "9007199254740993".into(), index: vec![0, 1] }
        );
    }

    #[test]
    fn shapes_drop_trailing_unit_axes_beyond_the_third() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.nii");
        for (dims, shape) in [
            (vec![4, 3, 2, 1], vec![4, 3, 2]),
            (vec![4, 3, 2, 1, 1, 1, 1], vec![4, 3, 2]),
            (vec![4, 3, 1], vec![4, 3, 1]),
            (vec![4, 1, 1, 1], vec![4, 1, 1]),
            (vec![4, 3], vec![4, 3]),
            (vec![5], vec![5]),
            (vec![2, 3, 2, 3], vec![2, 3, 2, 3]),
            (vec![2, 3, 2, 1, 2], vec![2, 3, 2, 1, 2]),
        ] {
            let mut spec = Spec::new(1, 16, &dims);
            spec.pixdim = [1.0, 0.5, 0.6, 0.7, 2.5, 1.0, 1.0, 1.0];
            let n: i64 = dims.iter().product();
            let want = Array::from_shape_vec(IxDyn(&shape).f(), (0..n).map(|v| v as f64).collect())
                .unwrap()
                .as_standard_layout()
                .into_owned();
            std::fs::write(&p, spec.file(&file_order(&want))).unwrap();
            let (a, h) = read_scores::<f64>(&p).unwrap();
            assert_eq!(a, want, "{dims:?}");
            assert_eq!(h.shape(), &shape[..]);
            let sp: Vec<f64> = [0.5, 0.6, 0.7, 1.0, 1.0]
                .iter()
                .copied()
                .take(shape.len())
                .map(|s| f64::from(s as f32))
                .collect();
            assert_eq!(h.spacing().as_slice(), Some(&sp[..]), "{dims:?}");
        }
    }

    #[test]
    fn transposition_matches_ndarray() {
        for shape in [
            vec![70, 3, 40],
            vec![33, 1, 65, 2],
            vec![1, 5, 1],
            vec![40, 37],
            vec![2, 3, 4, 5, 6],
            vec![7],
            vec![64, 64, 1],
        ] {
            let n: usize = shape.iter().product();
            let src: Vec<u32> = (0..n as u32).collect();
            let want = Array::from_shape_vec(IxDyn(&shape).f(), src.clone()).unwrap();
            let got = to_row_major(&src, &shape, |v| v);
            assert_eq!(got, want.as_standard_layout().iter().copied().collect::<Vec<_>>(), "{shape:?}");
            assert_eq!(to_file_order(&got, &shape, |v| v), src, "{shape:?}");
        }
    }

    #[test]
    fn scaling_as_nibabel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.nii.gz");
        let raw = Array3::from_shape_fn((2, 3, 2), |(x, y, z)| (x + 2 * y + 6 * z) as f64 - 4.0).into_dyn();
        let write = |spec: &Spec| std::fs::write(&p, gzip(&spec.file(&file_order(&raw)))).unwrap();
        for version in [1, 2] {
            let mut spec = Spec::new(version, 4, &[2, 3, 2]);
            spec.slope = 0.5;
            spec.inter = -3.0;
            write(&spec);
            let (a, h) = read_scores::<f64>(&p).unwrap();
            assert_eq!(a, raw.mapv(|v| v * 0.5 - 3.0));
            assert_eq!((h.scaling(), h.precision()), (Some((0.5, -3.0)), Precision::F64));
            let e = read_scores::<f32>(&p).unwrap_err();
            let msg = one_line_naming(&e, &p);
            assert!(msg.contains("int16 scaled by scl_slope 0.5, scl_inter -3"), "{msg}");
            // masks are read unscaled
            let (m, _) = read_mask(&p, Labels::select([-4, 0]).unwrap()).unwrap();
            assert_eq!(m, raw.mapv(|v| u8::from(v == -4.0 || v == 0.0)));
            // slope 0 or NaN: no scaling; 1 and 0: none either
            for (slope, inter, scaled) in [
                (0.0, 5.0, false),
                (f64::NAN, 5.0, false),
                (1.0, 0.0, false),
                (1.0, 2.0, true),
                (-2.0, 0.0, true),
            ] {
                spec.slope = slope;
                spec.inter = inter;
                write(&spec);
                let (a, h) = read_scores::<f64>(&p).unwrap();
                let want = if scaled { raw.mapv(|v| v * slope + inter) } else { raw.clone() };
                assert_eq!(a, want, "{slope} {inter}");
                assert_eq!(h.precision(), if scaled { Precision::F64 } else { Precision::F32 });
            }
            spec.slope = 2.0;
            spec.inter = f64::INFINITY;
            write(&spec);
            let e = read_header(&p).unwrap_err();
            assert!(one_line_naming(&e, &p).contains("scl_inter = inf"), "{e}");
        }
    }

    #[test]
    fn spacing_in_millimetres() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("u.nii");
        let f32s = |v: [f64; 3]| v.map(|x| f64::from(x as f32) * 1.0);
        for (xyzt, pixdim, scale) in [
            (1u8, [0.001, 0.002, 0.0005], 1000.0),
            (2, [0.8, 0.8, 2.5], 1.0),
            (2 | 8, [0.8, 0.8, 2.5], 1.0), // mm, seconds
            (0, [1.5, 2.0, 3.0], 1.0),
            (3, [500.0, 250.0, 1000.0], 0.001),
        ] {
            for version in [1, 2] {
                let mut spec = Spec::new(version, 2, &[2, 2, 2, 3]);
                spec.xyzt = xyzt;
                spec.pixdim = [1.0, pixdim[0], pixdim[1], pixdim[2], 2.0, 1.0, 1.0, 1.0];
                std::fs::write(&p, spec.file(&[0.0; 24])).unwrap();
                let h = read_header(&p).unwrap();
                let stored = if version == 1 { f32s(pixdim) } else { pixdim };
                let want: Vec<f64> = stored.iter().map(|v| v * scale).chain([1.0]).collect();
                assert_eq!(h.spacing().as_slice(), Some(&want[..]), "{xyzt} v{version}");
            }
        }
        let mut spec = Spec::new(1, 2, &[2, 2]);
        spec.xyzt = 5;
        std::fs::write(&p, spec.file(&[0.0; 4])).unwrap();
        assert!(read_header(&p).unwrap_err().to_string().contains("space unit code 5"));
        for (k, bad) in [(1, 0.0), (2, -1.0), (3, f64::NAN), (2, f64::INFINITY)] {
            let mut spec = Spec::new(2, 2, &[2, 2, 2]);
            spec.pixdim[k] = bad;
            std::fs::write(&p, spec.file(&[0.0; 8])).unwrap();
            let e = read_header(&p).unwrap_err();
            let msg = one_line_naming(&e, &p);
            let axis = ["x", "y", "z"][k - 1];
            assert!(
                msg.contains(&format!("pixdim[{k}] = ")) && msg.contains(&format!("along {axis}")),
                "{msg}"
            );
        }
        // pixdim of axes that are not spatial does not matter
        let mut spec = Spec::new(1, 2, &[2, 2]);
        spec.pixdim[3] = 0.0;
        spec.pixdim[4] = -1.0;
        std::fs::write(&p, spec.file(&[0.0; 4])).unwrap();
        assert_eq!(read_header(&p).unwrap().spacing().as_slice(), Some(&[1.0, 1.0][..]));
    }

    fn assert_close(a: &Affine, b: &Affine, tol: f64) {
        for (ra, rb) in a.iter().zip(b) {
            for (x, y) in ra.iter().zip(rb) {
                assert!((x - y).abs() <= tol, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn affines_as_nibabel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.nii");
        let read = |spec: &Spec| {
            std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
            read_header(&p).unwrap()
        };
        for version in [1, 2] {
            // fallback: nibabel's doctest for shape_zoom_affine((3, 5, 7), (3, 2, 1))
            let mut spec = Spec::new(version, 2, &[3, 5, 7]);
            spec.pixdim = [1.0, 3.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0];
            let h = read(&spec);
            assert_eq!(h.affine_source(), AffineSource::Pixdim);
            assert_eq!(
                h.affine(),
                &[[-3.0, 0.0, 0.0, 3.0], [0.0, 2.0, 0.0, -4.0], [0.0, 0.0, 1.0, -3.0], [0.0, 0.0, 0.0, 1.0]]
            );
            spec.sform_code = 7; // not a valid code: ignored, as nibabel does
            assert_eq!(read(&spec).affine_source(), AffineSource::Pixdim);
            // qform: 90 degrees about z, qfac -1, pixdim (2, 3, 4)
            spec.sform_code = 0;
            spec.qform_code = 1;
            spec.pixdim = [-1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 1.0];
            let h45 = std::f64::consts::FRAC_1_SQRT_2;
            spec.quatern = [0.0, 0.0, h45, 10.0, 20.0, 30.0];
            let h = read(&spec);
            assert_eq!(h.affine_source(), AffineSource::Qform);
            let want =
                [[0.0, -3.0, 0.0, 10.0], [2.0, 0.0, 0.0, 20.0], [0.0, 0.0, -4.0, 30.0], [0.0, 0.0, 0.0, 1.0]];
            assert_close(h.affine(), &want, if version == 1 { 1e-6 } else { 1e-14 });
            // 180 degrees about x: b = 1, a = 0 exactly
            spec.pixdim = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
            spec.quatern = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
            assert_eq!(
                read(&spec).affine(),
                &[[1.0, 0.0, 0.0, 0.0], [0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]
            );
            spec.quatern = [0.9, 0.5, 0.0, 0.0, 0.0, 0.0];
            std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
            assert!(read_header(&p).unwrap_err().to_string().contains("norm above 1"));
            // sform wins over qform
            spec.quatern = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
            spec.sform_code = 2;
            spec.srow = [0.5, 0.1, 0.0, -10.0, 0.0, 0.75, 0.2, 5.5, 0.0, 0.0, 2.5, 100.0];
            let h = read(&spec);
            assert_eq!(h.affine_source(), AffineSource::Sform);
            let r =
                |i: usize| -> [f64; 4] { std::array::from_fn(|j| f64::from(spec.srow[4 * i + j] as f32)) };
            let want = [r(0), r(1), r(2), [0.0, 0.0, 0.0, 1.0]];
            if version == 1 {
                assert_eq!(h.affine(), &want);
            } else {
                for (row, want) in h.affine().iter().zip(spec.srow.chunks(4)) {
                    assert_eq!(&row[..], want);
                }
            }
            assert_eq!(h.geometry().affine(), Some(h.affine()));
            spec.srow[3] = f64::NAN;
            std::fs::write(&p, spec.file(&[0.0; 105])).unwrap();
            assert!(read_header(&p).unwrap_err().to_string().contains("sform affine has an entry"));
        }
    }

    #[test]
    fn label_maps_and_masks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("seg.nii.gz");
        let labels = Array3::from_shape_fn((3, 2, 2), |(x, y, z)| [0.0, 1.0, 2.0, 4.0][(x + y + 2 * z) % 4])
            .into_dyn();
        for code in [512, 16, 64, 2, 256] {
            let spec = Spec::new(1, code, &[3, 2, 2]);
            std::fs::write(&p, gzip(&spec.file(&file_order(&labels)))).unwrap();
            for sel in [vec![1, 4], vec![2], vec![0, 1, 2, 4], vec![7]] {
                let l = Labels::select(sel.clone()).unwrap();
                let (m, h) = read_mask(&p, &l).unwrap();
                assert_eq!(m, l.binarize(&labels).unwrap(), "{code} {sel:?}");
                assert_eq!(h.shape(), &[3, 2, 2]);
            }
            // as a binary mask, the first 2 (at (2, 0, 0) in file order) is named
            let e = read_mask(&p, &Labels::Binary).unwrap_err();
            one_line_naming(&e, &p);
            assert_eq!(
                e,
                in_file(&p, Error::NonBinaryMask { image: None, index: vec![2, 0, 0], value: 2.0 }),
                "{code}"
            );
        }
        // a non-integer label, with its voxel (x, y, z)
        let mut bad = labels.clone();
        bad[[1, 1, 0]] = 1.5;
        let spec = Spec::new(2, 16, &[3, 2, 2]);
        std::fs::write(&p, gzip(&spec.file(&file_order(&bad)))).unwrap();
        let e = read_mask(&p, Labels::select([1]).unwrap()).unwrap_err();
        assert_eq!(e, in_file(&p, Error::InvalidLabel { image: None, index: vec![1, 1, 0], value: 1.5 }));
        assert!(one_line_naming(&e, &p).contains("holds 1.5 at voxel [1, 1, 0]"));
        // a 0/1 float mask
        let spec = Spec::new(1, 16, &[3, 2, 2]);
        std::fs::write(&p, gzip(&spec.file(&file_order(&labels.mapv(|v| f64::from(v == 1.0)))))).unwrap();
        assert_eq!(read_mask(&p, &Labels::Binary).unwrap().0, labels.mapv(|v| u8::from(v == 1.0)));
    }

    #[test]
    fn extensions_and_trailing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let want = Array3::from_shape_fn((2, 2, 3), |(x, y, z)| (x * 100 + y * 10 + z) as f64).into_dyn();
        for version in [1, 2] {
            let mut spec = Spec::new(version, 4, &[2, 2, 3]);
            spec.ext = 48;
            let mut bytes = spec.file(&file_order(&want));
            bytes.extend_from_slice(b"trailing bytes after the data are allowed");
            for gz in [false, true] {
                let p = dir.path().join(if gz { "e.nii.gz" } else { "e.nii" });
                std::fs::write(&p, if gz { gzip(&bytes) } else { bytes.clone() }).unwrap();
                assert_eq!(read_scores::<f32>(&p).unwrap().0, want.mapv(|v| v as f32));
            }
        }
        // a .nii that is gzip inside is read too
        let spec = Spec::new(1, 4, &[2, 2, 3]);
        let p = dir.path().join("misnamed.nii");
        std::fs::write(&p, gzip(&spec.file(&file_order(&want)))).unwrap();
        assert_eq!(read_scores::<f64>(&p).unwrap().0, want);
    }

    #[test]
    fn hostile_headers_are_one_line_errors_and_allocate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.nii");
        let pg = dir.path().join("h.nii.gz");
        let check = |path: &Path, bytes: &[u8], want: &str| {
            std::fs::write(path, bytes).unwrap();
            let e = read_scores::<f64>(path).unwrap_err();
            let msg = one_line_naming(&e, path);
            assert!(msg.contains(want), "{msg} (wanted {want:?})");
            let e2 = read_mask(path, &Labels::Binary).unwrap_err();
            assert_eq!(e2.to_string(), msg);
            e
        };
        // huge dims: 2.8e14 bytes declared in a file of a few hundred
        let huge = Spec::new(1, 64, &[32767, 32767, 32767]);
        let e = check(
            &p,
            &huge.file(&[1.0; 8]),
            "truncated NIfTI file: the data needs 281449207693304 bytes, the file holds 64",
        );
        assert!(matches!(problem(e), FileProblem::NiftiTruncated { part: "data", .. }));
        check(&pg, &gzip(&huge.file(&[1.0; 8])), "gzip file can hold");
        let huge2 = Spec::new(2, 64, &[1 << 40, 1 << 40, 1 << 40]);
        check(&p, &huge2.file(&[]), "more bytes than this machine can address");
        let bigish = Spec::new(2, 64, &[1 << 20, 1 << 20]);
        check(&pg, &gzip(&bigish.file(&[])), "gzip file can hold");
        // negative and zero dims; dim[0] out of range
        check(&p, &Spec::new(1, 2, &[4, -3, 2]).file(&[]), "dim[2] = -3 is negative");
        check(&p, &Spec::new(2, 2, &[4, 3, 0]).file(&[]), "dim[3] = 0: the image has no voxels");
        for d0 in [0, 8, -1] {
            let mut s = Spec::new(1, 2, &[2, 2]);
            s.dim0 = Some(d0);
            check(&p, &s.file(&[0.0; 4]), &format!("dim[0] = {d0}: the number of dimensions must be 1 to 7"));
        }
        // vox_offset past the end, inside the header, not whole
        let mut s = Spec::new(1, 2, &[2, 2]);
        s.vox_offset = Some(1e9);
        check(&p, &s.file(&[0.0; 4]), "vox_offset = 1000000000 is past the end of the file (356 bytes)");
        s.vox_offset = Some(100.0);
        check(&p, &s.file(&[0.0; 4]), "vox_offset = 100 points inside the 348-byte header");
        s.vox_offset = Some(352.5);
        check(&p, &s.file(&[0.0; 4]), "vox_offset = 352.5 is not a whole number");
        s.vox_offset = Some(-352.0); // NIfTI-1 stores it as a float
        check(&p, &s.file(&[0.0; 4]), "vox_offset = -352 is negative");
        let mut s = Spec::new(2, 2, &[2, 2]);
        s.vox_offset = Some(-8.0);
        check(&p, &s.file(&[0.0; 4]), "vox_offset = -8 is negative");
        s.vox_offset = Some(1e15);
        check(&pg, &gzip(&s.file(&[0.0; 4])), "gzip file can hold");
        // truncated data and header
        let good = Spec::new(1, 16, &[4, 4, 4]).file(&[0.5; 64]);
        let e = check(&p, &good[..good.len() - 10], "truncated NIfTI file");
        assert_eq!(
            problem(e),
            FileProblem::NiftiTruncated { part: "data", expected_bytes: 256, found_bytes: 246 }
        );
        check(&p, &good[..200], "the header needs 348 bytes, the file holds 200");
        check(&pg, &gzip(&good[..good.len() - 10]), "the data needs 256 bytes, the file holds 246");
        let z = gzip(&good);
        // a cut gzip file, wherever it is cut
        for cut in [5, 12, z.len() / 2, z.len() - 9, z.len() - 1] {
            let e = check(&pg, &z[..cut], "h.nii.gz");
            assert!(
                matches!(
                    problem(e.clone()),
                    FileProblem::NiftiTruncated { .. } | FileProblem::BadData { .. }
                ),
                "{cut}: {e}"
            );
        }
        // a corrupt gzip stream (its CRC) is an error, not wrong data
        let mut z2 = z.clone();
        let n = z2.len();
        z2[n - 8] ^= 0xFF;
        check(&pg, &z2, "the gzip stream is corrupt");
        // not NIfTI
        check(&p, b"", "not a single-file NIfTI-1 or NIfTI-2 image (.nii, .nii.gz): the file holds 0 bytes");
        check(&p, b"\x93NUMPY\x01\x00 some npy", "sizeof_hdr is");
        let mut s = Spec::new(1, 2, &[2, 2]);
        s.magic = Some(b"ni1\0".to_vec());
        check(&p, &s.file(&[0.0; 4]), ".hdr/.img pair");
        s.magic = Some(b"xyz\0".to_vec());
        check(&p, &s.file(&[0.0; 4]), "magic string is 'xyz\\x00'");
        let mut s = Spec::new(2, 2, &[2, 2]);
        s.magic = Some(b"n+2\0\n\n\x1a\n".to_vec());
        check(&p, &s.file(&[0.0; 4]), "transferred as text");
        s.magic = Some(b"n+2\0\0\0\0\0".to_vec());
        std::fs::write(&p, s.file(&[0.0; 4])).unwrap();
        assert!(read_header(&p).is_ok());
        // unsupported datatypes, by name and code
        for (code, name) in
            [(32, "complex64"), (128, "RGB"), (1536, "float128"), (0, "none"), (77, "unknown")]
        {
            let e = check(
                &p,
                &Spec::new(1, code, &[2, 2]).file(&[]),
                &format!("unsupported datatype {name} (code {code})"),
            );
            assert_eq!(problem(e), FileProblem::UnsupportedNiftiDatatype { name, code });
        }
        // a missing file
        let e = read_header(dir.path().join("none.nii")).unwrap_err();
        assert!(matches!(problem(e), FileProblem::Io { kind: std::io::ErrorKind::NotFound, .. }));
    }

    #[test]
    fn writes_keep_the_geometry_version_and_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src.nii");
        let scores = Array4::from_shape_fn((3, 4, 2, 2), |(x, y, z, c)| {
            (x as f64) - 2.0 * y as f64 + 0.25 * z as f64 + 10.0 * c as f64
        });
        for (version, big) in [(1, false), (1, true), (2, false), (2, true)] {
            let mut spec = Spec::new(version, 64, &[3, 4, 2, 2]);
            spec.big = big;
            spec.pixdim = [-1.0, 0.8, 0.9, 2.5, 3.0, 1.0, 1.0, 1.0];
            spec.qform_code = 1;
            spec.quatern = [0.0, 0.0, std::f64::consts::FRAC_1_SQRT_2, 1.0, 2.0, 3.0];
            spec.slope = 2.0;
            spec.inter = 1.0;
            spec.ext = 16;
            std::fs::write(&src, spec.file(&file_order(&scores.clone().into_dyn()))).unwrap();
            let (s, like) = read_scores::<f64>(&src).unwrap();
            assert_eq!(s, scores.mapv(|v| v * 2.0 + 1.0).into_dyn());
            let mask = s.index_axis(ndarray::Axis(3), 1).mapv(|v| v > 20.0);
            for name in ["m.nii", "m.nii.gz"] {
                let out = dir.path().join(name);
                let _ = std::fs::remove_file(&out);
                let o = mask_output(&out, &mask, &like).unwrap();
                assert!(!out.exists());
                o.commit().unwrap();
                let (m, h) = read_mask(&out, &Labels::Binary).unwrap();
                assert_eq!(m, mask.mapv(u8::from).into_dyn());
                assert_eq!((h.version(), h.is_big_endian(), h.dtype()), (version, big, Dtype::U8));
                assert_eq!(
                    (h.shape(), h.affine(), h.affine_source()),
                    (&[3, 4, 2][..], like.affine(), AffineSource::Qform)
                );
                assert_eq!(h.spacing().as_slice(), Some(&like.spacing().as_slice().unwrap()[..3]));
                assert_eq!(h.scaling(), None);
                let l = h.layout();
                assert_eq!(get_float(&h.raw, big, l.cal_max, 0), 1.0);
                assert_eq!(get_float(&h.raw, big, l.scl_slope, 0), 1.0);
                assert_eq!(get_int(&h.raw, big, l.bitpix, 0), 8);
                assert_eq!(h.vox_offset, l.size as u64 + 4);
                let bytes = if name.ends_with(".gz") { 0 } else { std::fs::metadata(&out).unwrap().len() };
                assert!(bytes == 0 || bytes == h.vox_offset + 24);
            }
            // scores: float32 and float64, exact, 4-D
            let out = dir.path().join("s.nii.gz");
            let mut s32 = s.mapv(|v| v as f32);
            s32[[0, 0, 0, 0]] = f32::NEG_INFINITY;
            write_scores(&out, &s32, &like).unwrap();
            let (back, h) = read_scores::<f32>(&out).unwrap();
            assert_eq!((back, h.dtype(), h.shape()), (s32.clone(), Dtype::F32, &[3, 4, 2, 2][..]));
            write_scores(&out, &s, &like).unwrap();
            let (back, h) = read_scores::<f64>(&out).unwrap();
            assert_eq!((back, h.dtype(), h.affine()), (s.clone(), Dtype::F64, like.affine()));
        }
    }

    #[test]
    fn writes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let like = NiftiHeader::new(&[3, 2, 2], &Geometry::default()).unwrap();
        let out = dir.path().join("m.nii");
        let e = write_mask(&out, &Array3::<u8>::zeros((2, 3, 2)), &like).unwrap_err();
        assert!(matches!(&e, Error::InFile { error, .. } if matches!(**error, Error::ShapeMismatch { .. })));
        one_line_naming(&e, &out);
        let mut m = Array3::<u8>::zeros((3, 2, 2));
        m[[2, 1, 0]] = 2;
        let e = write_mask(&out, &m, &like).unwrap_err();
        assert_eq!(e, in_file(&out, Error::NonBinaryMask { image: None, index: vec![2, 1, 0], value: 2.0 }));
        let e = write_scores(&out, &Array4::<f32>::zeros((3, 2, 2, 0)), &like).unwrap_err();
        assert!(matches!(problem(e), FileProblem::Write { .. }));
        assert!(!out.exists());
        // a transposed view is written in its logical order
        let a = Array3::from_shape_fn((2, 2, 3), |(x, y, z)| (x * 9 + y * 3 + z) as f32);
        write_scores(&out, &a.t(), &like).unwrap();
        assert_eq!(read_scores::<f32>(&out).unwrap().0, a.t().to_owned().into_dyn());
        // a mask of floats and one written from a 4-D source's first three axes
        write_mask(
            &out,
            &array![[[0.0_f64, 1.0], [1.0, 0.0]], [[1.0, 1.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]],
            &like,
        )
        .unwrap();
        assert_eq!(read_mask(&out, &Labels::Binary).unwrap().0.sum(), 5);
    }

    #[test]
    fn new_headers() {
        let dir = tempfile::tempdir().unwrap();
        let sp = Spacing::new(vec![0.5, 0.75, 2.0]).unwrap();
        let h = NiftiHeader::new(&[4, 3, 2], &Geometry::new(sp.clone())).unwrap();
        assert_eq!((h.version(), h.shape(), h.spacing()), (1, &[4, 3, 2][..], &sp));
        assert_eq!(h.affine_source(), AffineSource::Sform);
        assert_eq!(h.affine()[1], [0.0, 0.75, 0.0, 0.0]);
        let aff = [[0.0, -1.0, 0.0, 5.0], [2.0, 0.0, 0.0, -3.0], [0.0, 0.0, 1.5, 7.25], [0.0, 0.0, 0.0, 1.0]];
        let h = NiftiHeader::new(&[4, 3, 2, 5], &Geometry::default().with_affine(aff).unwrap()).unwrap();
        assert_eq!(h.affine(), &aff);
        assert_eq!(h.spacing().as_slice(), Some(&[1.0; 4][..]));
        let p = dir.path().join("n.nii");
        write_mask(&p, &ndarray::Array4::from_elem((4, 3, 2, 5), true), &h).unwrap();
        let back = read_header(&p).unwrap();
        assert_eq!((back.affine(), back.shape()), (&aff, &[4, 3, 2, 5][..]));
        assert!(NiftiHeader::new(&[], &Geometry::default()).is_err());
        assert!(NiftiHeader::new(&[40000], &Geometry::default()).is_err());
        assert!(NiftiHeader::new(&[4, 0], &Geometry::default()).is_err());
        assert!(NiftiHeader::new(&[4, 4], &Geometry::new(sp)).is_err());
    }
}
