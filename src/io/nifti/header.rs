//! The NIfTI header: where each field sits in a NIfTI-1 (348 bytes) or
//! NIfTI-2 (540 bytes) header, reading and writing those fields in either
//! byte order, and [`parse`], which checks a header and interprets it as a
//! [`NiftiHeader`]: datatype, shape, voxel spacing, scaling and the affine
//! chosen as nibabel chooses it (sform, qform or `pixdim`).

use std::path::Path;

use super::{bad, not_nifti};
use crate::error::{Error, FileProblem, Result};
use crate::image::{Affine, Geometry, Spacing};
use crate::io::{file_error, Dtype, Precision};

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
pub(super) struct Field {
    at: usize,
    ty: Ty,
}

const fn field(at: usize, ty: Ty) -> Field {
    Field { at, ty }
}

/// Where the fields this module uses are in one NIfTI version's header.
#[derive(Debug)]
pub(super) struct Layout {
    /// `sizeof_hdr`.
    pub(super) size: usize,
    datatype: Field,
    pub(super) bitpix: Field,
    /// `dim[0..8]`.
    dim: Field,
    /// `intent_p1..3`.
    intent_p: Field,
    intent_code: Field,
    /// `pixdim[0..8]`.
    pixdim: Field,
    vox_offset: Field,
    pub(super) scl_slope: Field,
    scl_inter: Field,
    pub(super) cal_max: Field,
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

pub(super) const V1: Layout = Layout {
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

pub(super) const V2: Layout = Layout {
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
pub(super) fn get_int(raw: &[u8], big: bool, fd: Field, i: usize) -> i64 {
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
pub(super) fn get_float(raw: &[u8], big: bool, fd: Field, i: usize) -> f64 {
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
/// Read by [`read_header`](super::read_header) (and returned with the data by
/// [`read_scores`](super::read_scores) and [`read_mask`](super::read_mask)); given to
/// [`write_mask`](super::write_mask) and [`write_scores`](super::write_scores) as
/// the reference whose geometry an output keeps. Made for new data by
/// [`NiftiHeader::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    pub(super) version: u8,
    pub(super) big_endian: bool,
    /// The header as stored (348 or 540 bytes, the file's byte order).
    pub(super) raw: Vec<u8>,
    pub(super) dtype: Dtype,
    pub(super) shape: Vec<usize>,
    spacing: Spacing,
    affine: Affine,
    affine_source: AffineSource,
    pub(super) scaling: Option<(f64, f64)>,
    pub(super) vox_offset: u64,
    pub(super) data_bytes: usize,
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

    pub(super) fn layout(&self) -> &'static Layout {
        if self.version == 1 {
            &V1
        } else {
            &V2
        }
    }

    /// What the scores are, for messages.
    pub(super) fn describe_values(&self) -> String {
        match self.scaling {
            Some((s, i)) => format!("{} scaled by scl_slope {s}, scl_inter {i}", self.dtype),
            None => self.dtype.name().to_owned(),
        }
    }

    /// The header of an output of `shape` and datatype `code` (`bitpix`
    /// bits) with this header's geometry, followed by an empty extender.
    pub(super) fn for_output(&self, shape: &[usize], code: i16, bitpix: i16, cal: (f64, f64)) -> Vec<u8> {
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

/// Check and interpret a whole header (`raw` is 348 or 540 bytes).
pub(super) fn parse(path: &Path, raw: Vec<u8>, big: bool, version: u8) -> Result<NiftiHeader> {
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
