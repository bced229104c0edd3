//! Reading and writing images (feature `npy`): NumPy `.npy` stacks,
//! streamed one image at a time; and, with the feature `nifti`, NIfTI
//! volumes with their geometry (module `io::nifti`).
//!
//! Inputs are batch-first stacks `(N, spatial...)`: `N` score images or
//! masks of any dimension. [`NpyStack`] opens a stack by its header and
//! reads images on demand, so a cohort streams through calibration with a
//! bounded number of images in memory ([`stream`](crate::stream)).
//! Any common element type is read:
//!
//! | dtype | as scores | as masks ([`Labels`]) | as indices ([`read_indices`]) |
//! |---|---|---|---|
//! | `bool` | 0 / 1 | as is | no |
//! | `int8`, `int16`, `uint8`, `uint16` | exact `f32` | 0/1, or label values | yes |
//! | `int32`, `int64`, `uint32`, `uint64` | exact `f64` (error beyond 2^53) | 0/1, or label values | yes |
//! | `float16`, `float32` | exact `f32` | 0.0/1.0, or whole-number labels | no |
//! | `float64` | `f64` | 0.0/1.0, or whole-number labels | no |
//!
//! **Native precision.** Scores are read into the narrowest float type that
//! holds every value of the file's dtype exactly ([`Precision::of`]), and
//! the pipeline computes in that type: `float32` scores are transformed,
//! reduced and thresholded in `f32`. Calibration statistics are then exact
//! `f32` values (kept as `f64`, which holds every `f32`), and thresholds are
//! exact order statistics of them; the same scores stored as `float64` give
//! the same thresholds whenever the transforms are exact in both types
//! (identity, and every transform on integer-valued scores).
//!
//! Little- and big-endian files are read; Fortran-ordered stacks (which
//! numpy writes only when asked) are read whole on first use.
//!
//! Errors name the file and what is wrong with it ([`FileProblem`]): empty
//! or truncated files, bad headers, unsupported dtypes (named), images with
//! no voxels, and for contents the image index and voxel of the first
//! non-binary mask value or value that does not fit ([`Error::InFile`]).
//!
//! Writing ([`write_masks`], [`write_array`], [`NpyWriter`], [`write_atomic`])
//! goes through an [`Output`]: nothing is at the destination until the file
//! is complete, and outputs that belong together are published together
//! ([`commit_all`]).
//!
//! ```
//! use confseg::io::{read_masks, read_scores, write_array, write_masks, NpyStack, Precision};
//! use confseg::synthetic::Synthetic;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (scores, masks) = Synthetic::new([16, 16]).seed(1).stack(0..5); // (5, 16, 16)
//! write_array(dir.path().join("scores.npy"), &scores.mapv(|x| x as f32))?;
//! write_masks(dir.path().join("masks.npy"), &masks)?;
//!
//! let stack = NpyStack::open(dir.path().join("scores.npy"), "scores")?;
//! assert_eq!((stack.len(), stack.image_shape()), (5, &[16, 16][..]));
//! assert_eq!(stack.precision(), Precision::F32);
//! let third = stack.images::<f32>(vec![2]).next().unwrap()?; // one image read
//! assert_eq!(third[[3, 4]], scores[[2, 3, 4]] as f32);
//!
//! let s = read_scores::<f32>(dir.path().join("scores.npy"))?; // the whole stack
//! assert_eq!(s.shape(), &[5, 16, 16]);
//! assert_eq!(read_masks(dir.path().join("masks.npy"))?, masks.into_dyn());
//! # Ok::<(), confseg::Error>(())
//! ```

pub mod cohort;
#[cfg(feature = "nifti")]
pub mod nifti;
mod npy;
#[cfg(feature = "nifti")]
pub mod npz;
pub mod viewer;

use std::fmt;
use std::path::Path;

use ndarray::{Array, ArrayD, ArrayRef, Axis, Dimension, IxDyn};

pub use crate::output::{commit_all, remove_temporaries, write_atomic, Output, Publication, Staged};
pub use npy::{
    image_info, read_image, read_mask_image, write_npy, Images, Masks, NpyStack, NpyWriter, ReadFloat,
    WriteElement,
};

use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
pub use crate::mask::Labels;

/// Element types of `.npy` files that this module reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dtype {
    /// `bool` (`|b1`).
    Bool,
    /// `int8`.
    I8,
    /// `int16`.
    I16,
    /// `int32`.
    I32,
    /// `int64`.
    I64,
    /// `uint8`.
    U8,
    /// `uint16`.
    U16,
    /// `uint32`.
    U32,
    /// `uint64`.
    U64,
    /// `float16` (half precision).
    F16,
    /// `float32`.
    F32,
    /// `float64`.
    F64,
}

impl Dtype {
    /// Bytes per element.
    #[must_use]
    pub fn size(self) -> usize {
        match self {
            Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
            Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
            Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
            Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
        }
    }

    /// The NumPy name (`"float32"`, `"uint8"`, ...).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Dtype::Bool => "bool",
            Dtype::I8 => "int8",
            Dtype::I16 => "int16",
            Dtype::I32 => "int32",
            Dtype::I64 => "int64",
            Dtype::U8 => "uint8",
            Dtype::U16 => "uint16",
            Dtype::U32 => "uint32",
            Dtype::U64 => "uint64",
            Dtype::F16 => "float16",
            Dtype::F32 => "float32",
            Dtype::F64 => "float64",
        }
    }

    /// Whether this is a floating-point type.
    #[must_use]
    pub fn is_float(self) -> bool {
        matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an `.npy` header says about the array in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NpyInfo {
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Whether the data is stored in Fortran (column-major) order.
    pub fortran_order: bool,
}

/// The float type a file's values are read into: the narrowest that holds
/// every value of its dtype exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// `f32`: `float16`, `float32`, `bool` and integers of up to 16 bits.
    F32,
    /// `f64`: `float64` and integers of 32 and 64 bits.
    F64,
}

impl Precision {
    /// The precision for values of `dtype`.
    #[must_use]
    pub fn of(dtype: Dtype) -> Precision {
        match dtype {
            Dtype::Bool | Dtype::I8 | Dtype::U8 | Dtype::I16 | Dtype::U16 | Dtype::F16 | Dtype::F32 => {
                Precision::F32
            }
            Dtype::I32 | Dtype::U32 | Dtype::I64 | Dtype::U64 | Dtype::F64 => Precision::F64,
        }
    }

    /// The wider of two precisions (for inputs read together).
    #[must_use]
    pub fn max(self, other: Precision) -> Precision {
        if self == Precision::F64 || other == Precision::F64 {
            Precision::F64
        } else {
            Precision::F32
        }
    }

    /// The NumPy name of the float type.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Precision::F32 => "float32",
            Precision::F64 => "float64",
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `float32` or `float64` (the NumPy names).
///
/// ```
/// use confseg::io::Precision;
/// assert_eq!("float32".parse::<Precision>()?, Precision::F32);
/// assert!("f16".parse::<Precision>().is_err());
/// # Ok::<(), confseg::Error>(())
/// ```
impl std::str::FromStr for Precision {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Precision::F32, Precision::F64].into_iter().find(|p| p.name() == s.trim()).ok_or_else(|| {
            Error::UnknownName { what: "precision", name: s.to_owned(), known: "float32, float64" }
        })
    }
}

pub(crate) fn file_error(path: &Path, problem: FileProblem) -> Error {
    Error::File { path: path.to_path_buf(), problem }
}

pub(crate) fn os_error(path: &Path, e: &std::io::Error) -> Error {
    file_error(path, FileProblem::Io { kind: e.kind(), message: e.to_string() })
}

pub(crate) fn in_file(path: &Path, error: Error) -> Error {
    Error::InFile { path: path.to_path_buf(), error: Box::new(error) }
}

const ANY: &str = "bool, int8..int64, uint8..uint64, float16, float32, float64";
const INTEGERS: &str = "int8..int64, uint8..uint64";
const STACK: &str = "a batch-first stack (N, spatial...) with at least 2 axes";

/// The header of an `.npy` file: dtype, shape and order, without reading the data.
///
/// # Errors
/// [`Error::File`] if the file cannot be opened, is empty or truncated, has
/// an invalid header or an unsupported dtype.
pub fn inspect(path: impl AsRef<Path>) -> Result<NpyInfo> {
    let path = path.as_ref();
    let mut file = std::fs::File::open(path).map_err(|e| os_error(path, &e))?;
    let len = file.metadata().map_err(|e| os_error(path, &e))?.len();
    npy::read_header(path, &mut file, len, "an array").map(|h| h.info)
}

/// Stack images read one by one into one array `(N, spatial...)`.
fn collect_stack<T: Clone + Default>(
    stack: &NpyStack,
    images: impl Iterator<Item = Result<ArrayD<T>>>,
) -> Result<ArrayD<T>> {
    let mut out = crate::alloc::try_array(IxDyn(&stack.info().shape), "a stack")?;
    for (i, img) in images.enumerate() {
        out.index_axis_mut(Axis(0), i).assign(&img?);
    }
    Ok(out)
}

/// Read a whole batch-first stack `(N, spatial...)` of score images in the
/// float type `A` (`f32` for files of [`Precision::F32`], else `f64`).
/// NaN is not checked here: the calibrator and the fitted sets reject it
/// with the image and voxel. To stream a large stack, use [`NpyStack`].
///
/// # Errors
/// As [`NpyStack::open`]; [`FileProblem::InexactValue`] for a value `A`
/// cannot hold exactly.
pub fn read_scores<A: ReadFloat>(path: impl AsRef<Path>) -> Result<ArrayD<A>> {
    let stack = NpyStack::open(path, "scores")?;
    collect_stack(&stack, stack.images::<A>((0..stack.len()).collect()))
}

/// Read a whole batch-first stack `(N, spatial...)` of masks stored as bool,
/// integers or floats holding 0/1.
///
/// # Errors
/// As [`NpyStack::open`]; [`Error::InFile`] wrapping [`Error::NonBinaryMask`]
/// (image, voxel and value) for the first value other than 0 or 1.
pub fn read_masks(path: impl AsRef<Path>) -> Result<ArrayD<bool>> {
    let stack = NpyStack::open(path, "masks")?;
    let m = collect_stack(&stack, stack.masks((0..stack.len()).collect(), Labels::Binary))?;
    if let Some(p) = m.iter().position(|&v| v > 1) {
        let idx = crate::grid::unravel(p, m.shape());
        let value = f64::from(m.iter().nth(p).copied().unwrap_or(0));
        return Err(in_file(
            stack.path(),
            Error::NonBinaryMask { image: Some(idx[0]), index: idx[1..].to_vec(), value },
        ));
    }
    Ok(m.mapv(|v| v == 1))
}

/// Read an `.npy` array of any supported dtype and any shape as exact `f64`
/// (e.g. a per-image spacing file). Bounded: at most `max_len` elements.
///
/// # Errors
/// As [`inspect`]; [`FileProblem::WrongShape`] for more than `max_len`
/// elements; [`FileProblem::InexactValue`] for a 64-bit integer that `f64`
/// cannot hold.
pub fn read_array(path: impl AsRef<Path>, max_len: usize) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    let info = inspect(path)?;
    let len: usize = info.shape.iter().product();
    if len > max_len {
        return Err(file_error(
            path,
            FileProblem::WrongShape { shape: info.shape, expected: "a small array" },
        ));
    }
    // A (1, len) stack view of the array reads it with the stack reader.
    let mut file = std::fs::File::open(path).map_err(|e| os_error(path, &e))?;
    let flen = file.metadata().map_err(|e| os_error(path, &e))?.len();
    let h = npy::read_header(path, &mut file, flen, "an array")?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut file, &mut bytes).map_err(|e| os_error(path, &e))?;
    let mut values = Vec::new();
    <f64 as ReadFloat>::decode_scores(&bytes, h.info.dtype, h.big_endian, &mut values).map_err(
        |(p, value)| {
            file_error(path, FileProblem::InexactValue { value, index: crate::grid::unravel(p, &info.shape) })
        },
    )?;
    let shape = IxDyn(&info.shape);
    let a = if info.fortran_order {
        use ndarray::ShapeBuilder;
        Array::from_shape_vec(shape.f(), values).map(|a| a.as_standard_layout().into_owned())
    } else {
        Array::from_shape_vec(shape, values)
    };
    a.map_err(|_| {
        file_error(path, FileProblem::BadData { reason: "data length does not match the shape".into() })
    })
}

/// Read 0-based image indices (a 1-D integer array) for a stack of
/// `n_images` images, in file order.
///
/// # Errors
/// [`Error::File`] if the file is not a 1-D integer array
/// ([`FileProblem::WrongShape`], [`FileProblem::UnsupportedDtype`]), an
/// index is negative or `>= n_images` ([`FileProblem::IndexOutOfRange`]),
/// or an index is listed twice ([`FileProblem::DuplicateIndex`]).
pub fn read_indices(path: impl AsRef<Path>, n_images: usize) -> Result<Vec<usize>> {
    let path = path.as_ref();
    let info = inspect(path)?;
    if info.shape.len() != 1 {
        return Err(file_error(
            path,
            FileProblem::WrongShape { shape: info.shape, expected: "a 1-D array of image indices" },
        ));
    }
    if info.dtype.is_float() || info.dtype == Dtype::Bool {
        return Err(file_error(
            path,
            FileProblem::UnsupportedDtype {
                dtype: info.dtype.name().to_owned(),
                expected: "image indices",
                supported: INTEGERS,
            },
        ));
    }
    // Every index must be distinct and below n_images: at most n_images of them.
    if info.shape[0] > n_images {
        return Err(file_error(
            path,
            FileProblem::WrongShape { shape: info.shape, expected: "no more indices than images" },
        ));
    }
    let values = read_array(path, n_images)?;
    let mut first_seen = vec![None; n_images];
    let mut out = Vec::with_capacity(values.len());
    for (position, &x) in values.iter().enumerate() {
        #[allow(clippy::cast_possible_truncation)]
        let value = x as i128;
        let i = usize::try_from(value)
            .ok()
            .filter(|&i| i < n_images)
            .ok_or_else(|| file_error(path, FileProblem::IndexOutOfRange { value, position, n_images }))?;
        if let Some(first) = first_seen[i] {
            return Err(file_error(path, FileProblem::DuplicateIndex { value: i, first, second: position }));
        }
        first_seen[i] = Some(position);
        out.push(i);
    }
    Ok(out)
}

/// Read one integer group label per image (a 1-D integer array of length
/// `n_images`), for group-conditional calibration (`crate::groups`).
///
/// # Errors
/// [`Error::File`] if the file is not a 1-D integer array; [`Error::InFile`]
/// wrapping [`Error::InvalidParameter`] if its length is not `n_images`.
pub fn read_groups(path: impl AsRef<Path>, n_images: usize) -> Result<Vec<i64>> {
    let path = path.as_ref();
    let info = inspect(path)?;
    if info.shape.len() != 1 {
        return Err(file_error(
            path,
            FileProblem::WrongShape {
                shape: info.shape,
                expected: "a 1-D array of one group label per image",
            },
        ));
    }
    if info.dtype.is_float() || info.dtype == Dtype::Bool {
        return Err(file_error(
            path,
            FileProblem::UnsupportedDtype {
                dtype: info.dtype.name().to_owned(),
                expected: "group labels",
                supported: INTEGERS,
            },
        ));
    }
    if info.shape[0] != n_images {
        return Err(in_file(
            path,
            Error::InvalidParameter {
                name: "groups",
                value: format!("{} labels", info.shape[0]),
                reason: format!(
                    "the score files hold {n_images} images: one group label per image is needed"
                ),
            },
        ));
    }
    // integers read exactly (a 64-bit value beyond 2^53 is refused by `read_array`)
    #[allow(clippy::cast_possible_truncation)]
    Ok(read_array(path, n_images)?.iter().map(|&x| x as i64).collect())
}

/// Write masks as a `uint8` `.npy` array of 0/1 (same shape), atomically.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_masks<D: Dimension>(path: impl AsRef<Path>, masks: &ArrayRef<bool, D>) -> Result<()> {
    write_npy(path, &masks.mapv(u8::from))
}

/// Write a float array (`float32` or `float64`, same shape; infinities
/// kept), atomically.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_array<A: Float + WriteElement, D: Dimension>(
    path: impl AsRef<Path>,
    array: &ArrayRef<A, D>,
) -> Result<()> {
    write_npy(path, array)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{arr1, array, Array3};
    use ndarray_npy::write_npy as npy_write;

    fn problem(e: Error) -> FileProblem {
        match e {
            Error::File { problem, .. } => problem,
            other => panic!("expected a file error, got {other:?}"),
        }
    }

    #[test]
    fn every_dtype_reads_exactly_in_its_precision() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let base = Array3::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as i64 - 7);
        let want = base.mapv(|x| x as f64).into_dyn();
        npy_write(p("i8.npy"), &base.mapv(|x| x as i8)).unwrap();
        npy_write(p("i16.npy"), &base.mapv(|x| x as i16)).unwrap();
        npy_write(p("i32.npy"), &base.mapv(|x| x as i32)).unwrap();
        npy_write(p("i64.npy"), &base).unwrap();
        npy_write(p("f32.npy"), &base.mapv(|x| x as f32)).unwrap();
        npy_write(p("f64.npy"), &base.mapv(|x| x as f64)).unwrap();
        for (n, precision) in [
            ("i8", Precision::F32),
            ("i16", Precision::F32),
            ("i32", Precision::F64),
            ("i64", Precision::F64),
            ("f32", Precision::F32),
            ("f64", Precision::F64),
        ] {
            let path = p(&format!("{n}.npy"));
            assert_eq!(NpyStack::open(&path, "scores").unwrap().precision(), precision, "{n}");
            assert_eq!(read_scores::<f64>(&path).unwrap(), want, "{n}");
            if precision == Precision::F32 {
                assert_eq!(read_scores::<f32>(&path).unwrap(), want.mapv(|x| x as f32), "{n}");
            } else {
                // f32 cannot hold every value of these dtypes: refused, not rounded
                assert!(read_scores::<f32>(&path).is_err(), "{n}");
            }
        }
        let pos = base.mapv(|x| (x + 7) as u64);
        let want_pos = pos.mapv(|x| x as f64).into_dyn();
        npy_write(p("u8.npy"), &pos.mapv(|x| x as u8)).unwrap();
        npy_write(p("u16.npy"), &pos.mapv(|x| x as u16)).unwrap();
        npy_write(p("u32.npy"), &pos.mapv(|x| x as u32)).unwrap();
        npy_write(p("u64.npy"), &pos).unwrap();
        for n in ["u8", "u16", "u32", "u64"] {
            assert_eq!(read_scores::<f64>(p(&format!("{n}.npy"))).unwrap(), want_pos, "{n}");
        }
        // f32 values that are not exact decimals stay bit-identical
        let f = array![[[0.1_f32, -1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::NAN]]];
        npy_write(p("f32b.npy"), &f).unwrap();
        let r = read_scores::<f32>(p("f32b.npy")).unwrap();
        assert!(r.iter().zip(f.iter()).all(|(&a, &b)| a.to_bits() == b.to_bits()));
        let r = read_scores::<f64>(p("f32b.npy")).unwrap();
        assert!(r.iter().zip(f.iter()).take(5).all(|(&a, &b)| a == f64::from(b)));
    }

    /// A hand-made `.npy` file: `descr`, shape, order, raw data bytes.
    fn raw_npy(descr: &str, shape: &str, fortran: bool, data: &[u8]) -> Vec<u8> {
        let dict = format!(
            "{{'descr': '{descr}', 'fortran_order': {}, 'shape': {shape}, }}",
            if fortran { "True" } else { "False" }
        );
        let mut h = dict.into_bytes();
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(b' ');
        }
        h.push(b'\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&u16::try_from(h.len()).unwrap().to_le_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn float16_big_endian_fortran_order_and_bare_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.npy");
        // float16 little-endian: 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, inf = 0x7C00
        let data: Vec<u8> =
            [0x3C00u16, 0xC000, 0x3800, 0x7C00].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, raw_npy("<f2", "(2, 2)", false, &data)).unwrap();
        assert_eq!(read_scores::<f32>(&p).unwrap(), array![[1.0, -2.0], [0.5, f32::INFINITY]].into_dyn());
        // big-endian int16, Fortran order: memory [1, 2, 3, 4] is [[1, 3], [2, 4]]
        let data: Vec<u8> = [1i16, 2, 3, 4].iter().flat_map(|v| v.to_be_bytes()).collect();
        std::fs::write(&p, raw_npy(">i2", "(2, 2)", true, &data)).unwrap();
        let a = read_scores::<f64>(&p).unwrap();
        assert_eq!(a, array![[1.0, 3.0], [2.0, 4.0]].into_dyn());
        let info = inspect(&p).unwrap();
        assert_eq!(info, NpyInfo { dtype: Dtype::I16, shape: vec![2, 2], fortran_order: true });
        // a 3-D Fortran stack read image by image equals the transposed memory
        let vals: Vec<u8> = (0..24).collect();
        std::fs::write(&p, raw_npy("|u1", "(2, 3, 4)", true, &vals)).unwrap();
        let want =
            ndarray::Array::from_shape_vec((2, 3, 4).f(), vals.iter().map(|&v| f32::from(v)).collect())
                .unwrap();
        assert_eq!(read_scores::<f32>(&p).unwrap(), want.into_dyn());
        // Fortran-order masks: the non-binary voxel is named in logical (row-major) terms
        std::fs::write(&p, raw_npy("|u1", "(2, 3)", true, &[0, 1, 0, 0, 7, 1])).unwrap();
        // memory order F: m[0,0]=0 m[1,0]=1 m[0,1]=0 m[1,1]=0 m[0,2]=7 m[1,2]=1
        let e = read_masks(&p).unwrap_err();
        assert_eq!(
            e,
            Error::InFile {
                path: p.clone(),
                error: Box::new(Error::NonBinaryMask { image: Some(0), index: vec![2], value: 7.0 })
            }
        );
        // descriptors numpy reads without a byte order, and '<b1'
        std::fs::write(&p, raw_npy("f4", "(1, 2)", false, &[0, 0, 128, 63, 0, 0, 0, 64])).unwrap();
        assert_eq!(read_scores::<f32>(&p).unwrap(), array![[1.0_f32, 2.0]].into_dyn());
        std::fs::write(&p, raw_npy("<b1", "(1, 2)", false, &[1, 0])).unwrap();
        assert_eq!(read_masks(&p).unwrap(), array![[true, false]].into_dyn());
    }

    use ndarray::ShapeBuilder;

    #[test]
    fn masks_and_label_maps_of_any_dtype() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        let m = array![[[true, false], [false, true]], [[false, false], [true, true]]];
        npy_write(p("b.npy"), &m).unwrap();
        npy_write(p("u8.npy"), &m.mapv(u8::from)).unwrap();
        npy_write(p("i64.npy"), &m.mapv(i64::from)).unwrap();
        npy_write(p("f32.npy"), &m.mapv(|b| f32::from(u8::from(b)))).unwrap();
        for n in ["b", "u8", "i64", "f32"] {
            assert_eq!(read_masks(p(&format!("{n}.npy"))).unwrap(), m.clone().into_dyn(), "{n}");
        }
        let mut bad = m.mapv(|b| f64::from(u8::from(b)));
        bad[[1, 0, 1]] = 0.5;
        npy_write(p("bad.npy"), &bad).unwrap();
        let msg = read_masks(p("bad.npy")).unwrap_err().to_string();
        assert!(
            msg.contains("bad.npy")
                && msg.contains("image 1")
                && msg.contains("[0, 1]")
                && msg.contains("0.5"),
            "{msg}"
        );
        // a label map: structures as label sets; floats holding integers are labels too
        let labels = array![[[0u16, 1, 2], [4, 2, 0]]];
        npy_write(p("lab.npy"), &labels).unwrap();
        npy_write(p("labf.npy"), &labels.mapv(f64::from)).unwrap();
        for n in ["lab", "labf"] {
            let s = NpyStack::open(p(&format!("{n}.npy")), "masks").unwrap();
            let wt = s.masks(vec![0], Labels::select([1, 2, 4]).unwrap()).next().unwrap().unwrap();
            assert_eq!(wt, array![[0u8, 1, 1], [1, 1, 0]].into_dyn());
            let et = s.masks(vec![0], Labels::select([4]).unwrap()).next().unwrap().unwrap();
            assert_eq!(et, array![[0u8, 0, 0], [1, 0, 0]].into_dyn());
            // as a binary mask, the label 2 is an error naming image and voxel
            let e = s.masks(vec![0], Labels::Binary).next().unwrap();
            if n == "labf" {
                assert!(e.unwrap_err().to_string().contains("holds 2 at voxel [0, 2]"));
            }
        }
        npy_write(p("half.npy"), &array![[0.0_f32, 1.5]]).unwrap();
        let s = NpyStack::open(p("half.npy"), "masks").unwrap();
        let e = s.masks(vec![0], Labels::select([1]).unwrap()).next().unwrap().unwrap_err();
        assert!(e.to_string().contains("label map of image 0 holds 1.5 at voxel [1]"), "{e}");
    }

    #[test]
    fn broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        assert!(matches!(
            problem(read_scores::<f64>(&p).unwrap_err()),
            FileProblem::Io { kind: std::io::ErrorKind::NotFound, .. }
        ));
        std::fs::write(&p, b"").unwrap();
        assert_eq!(problem(read_scores::<f64>(&p).unwrap_err()), FileProblem::Empty);
        std::fs::write(&p, b"hello world, not numpy").unwrap();
        assert_eq!(problem(read_scores::<f64>(&p).unwrap_err()), FileProblem::NotNpy);
        let good = raw_npy("<f8", "(2, 2)", false, &[0u8; 32]);
        std::fs::write(&p, &good[..20]).unwrap();
        assert_eq!(problem(read_scores::<f64>(&p).unwrap_err()), FileProblem::TruncatedHeader);
        std::fs::write(&p, &good[..good.len() - 5]).unwrap();
        assert_eq!(
            problem(read_scores::<f64>(&p).unwrap_err()),
            FileProblem::Truncated { expected_bytes: 32, found_bytes: 27 }
        );
        let mut long = good.clone();
        long.push(0);
        std::fs::write(&p, &long).unwrap();
        assert_eq!(
            problem(read_scores::<f64>(&p).unwrap_err()),
            FileProblem::TrailingBytes { expected_bytes: 32, found_bytes: 33 }
        );
        std::fs::write(&p, raw_npy("<c16", "(1, 1)", false, &[0u8; 16])).unwrap();
        let e = read_scores::<f64>(&p).unwrap_err();
        assert!(e.to_string().contains("unsupported dtype '<c16' for scores"), "{e}");
        std::fs::write(&p, raw_npy("<f8", "(4,)", false, &[0u8; 32])).unwrap();
        assert!(matches!(problem(read_scores::<f64>(&p).unwrap_err()), FileProblem::WrongShape { .. }));
        assert!(matches!(problem(read_masks(&p).unwrap_err()), FileProblem::WrongShape { .. }));
        // 2^53 + 1 is not an f64
        npy_write(&p, &array![[9_007_199_254_740_993_i64, 1]]).unwrap();
        assert_eq!(
            problem(read_scores::<f64>(&p).unwrap_err()),
            FileProblem::InexactValue { value: "9007199254740993".into(), index: vec![0, 0] }
        );
        npy_write(&p, &array![[9_007_199_254_740_992_i64, i64::MIN]]).unwrap();
        assert_eq!(read_scores::<f64>(&p).unwrap()[[0, 1]], -9_223_372_036_854_775_808.0);
        npy_write(&p, &array![[u64::MAX]]).unwrap();
        assert!(matches!(problem(read_scores::<f64>(&p).unwrap_err()), FileProblem::InexactValue { .. }));
    }

    #[test]
    fn hostile_headers_allocate_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        // zero-voxel images in a huge stack: refused from the header alone
        for shape in ["(1000000000000, 0)", "(10000000, 0)", "(5, 16, 0)"] {
            std::fs::write(&p, raw_npy("<f4", shape, false, &[])).unwrap();
            let e = NpyStack::open(&p, "scores").unwrap_err();
            assert!(matches!(problem(e.clone()), FileProblem::EmptyImages { .. }), "{e}");
            assert!(e.to_string().contains("no voxels"), "{e}");
        }
        // a version-3 header whose length field claims 4 GiB
        let mut f = b"\x93NUMPY\x03\x00".to_vec();
        f.extend_from_slice(&u32::MAX.to_le_bytes());
        f.extend_from_slice(&[b' '; 178]);
        std::fs::write(&p, &f).unwrap();
        assert_eq!(problem(read_scores::<f32>(&p).unwrap_err()), FileProblem::TruncatedHeader);
        // shapes whose size overflows
        std::fs::write(&p, raw_npy("<f8", "(4294967296, 4294967296, 4294967296)", false, &[])).unwrap();
        assert!(matches!(problem(inspect(&p).unwrap_err()), FileProblem::BadHeader { .. }));
        // ... also beside a zero-length axis (found by tests/robustness.rs: a
        // stack of no images of 2^64 - 1 voxels each panicked in ndarray, and
        // image sizes overflowed)
        for shape in
            ["(0, 18446744073709551615)", "(0, 4294967296, 4294967296)", "(3, 0, 9223372036854775807)"]
        {
            std::fs::write(&p, raw_npy("<f4", shape, false, &[])).unwrap();
            for e in [
                inspect(&p).unwrap_err(),
                NpyStack::open(&p, "scores").unwrap_err(),
                read_scores::<f32>(&p).unwrap_err(),
                read_masks(&p).unwrap_err(),
                read_array(&p, 10).unwrap_err(),
            ] {
                assert!(matches!(problem(e.clone()), FileProblem::BadHeader { .. }), "{shape}: {e}");
                assert!(e.to_string().contains("is too large"), "{e}");
            }
        }
        // a stack of no images of a few voxels each is still read
        std::fs::write(&p, raw_npy("<f4", "(0, 3)", false, &[])).unwrap();
        assert_eq!(read_scores::<f32>(&p).unwrap().shape(), &[0, 3]);
        // parse errors are one line, and a missing key is named correctly
        std::fs::write(&p, raw_npy("<f8", "(2,", false, &[])).unwrap();
        let e = inspect(&p).unwrap_err().to_string();
        assert!(!e.contains('\n'), "{e}");
        let mut bad = raw_npy("<f8", "(1,)", false, &[0; 8]);
        let at = bad.windows(5).position(|w| w == b"shape").unwrap();
        bad[at..at + 5].copy_from_slice(b"shapf");
        std::fs::write(&p, &bad).unwrap();
        let e = inspect(&p).unwrap_err().to_string();
        assert!(e.contains("'shapf'") || e.contains("\"shapf\""), "{e}");
    }

    #[test]
    fn indices_are_validated() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("i.npy");
        npy_write(&p, &arr1(&[3_i64, 0, 2])).unwrap();
        assert_eq!(read_indices(&p, 4).unwrap(), vec![3, 0, 2]);
        assert_eq!(
            problem(read_indices(&p, 3).unwrap_err()),
            FileProblem::IndexOutOfRange { value: 3, position: 0, n_images: 3 }
        );
        npy_write(&p, &arr1(&[1_i32, -1])).unwrap();
        assert_eq!(
            problem(read_indices(&p, 3).unwrap_err()),
            FileProblem::IndexOutOfRange { value: -1, position: 1, n_images: 3 }
        );
        npy_write(&p, &arr1(&[1_u8, 2, 1])).unwrap();
        assert_eq!(
            problem(read_indices(&p, 3).unwrap_err()),
            FileProblem::DuplicateIndex { value: 1, first: 0, second: 2 }
        );
        npy_write(&p, &arr1(&[1.0_f64])).unwrap();
        assert!(matches!(problem(read_indices(&p, 3).unwrap_err()), FileProblem::UnsupportedDtype { .. }));
        npy_write(&p, &array![[1_i64]]).unwrap();
        assert!(matches!(problem(read_indices(&p, 3).unwrap_err()), FileProblem::WrongShape { .. }));
        npy_write(&p, &Array::<i64, _>::zeros(0)).unwrap();
        assert_eq!(read_indices(&p, 3).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn writes_round_trip_and_are_atomic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("m.npy");
        let m = array![[[true, false, true]], [[false, false, true]]];
        write_masks(&p, &m).unwrap();
        assert_eq!(inspect(&p).unwrap().dtype, Dtype::U8);
        assert_eq!(read_masks(&p).unwrap(), m.clone().into_dyn());
        // numpy reads what we write (checked by ndarray-npy's reader here)
        let back: ndarray::Array3<u8> = ndarray_npy::read_npy(&p).unwrap();
        assert_eq!(back, m.mapv(u8::from));
        // a transposed (non-standard) view is written in its logical order
        let a = array![[1.0_f32, f32::NEG_INFINITY], [3.0, 4.0]];
        write_array(&p, &a.t()).unwrap();
        assert_eq!(read_scores::<f32>(&p).unwrap(), a.t().to_owned().into_dyn());
        // a failing writer leaves the old file intact and no temporary file
        let before = std::fs::read(&p).unwrap();
        let e = write_atomic(&p, |w| {
            w.write_all(b"partial")?;
            Err(std::io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), before);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("m.npy")]);
        // an unwritable destination directory is a clear error
        let e = write_masks(dir.path().join("no/such/dir/m.npy"), &m).unwrap_err();
        assert!(matches!(problem(e), FileProblem::Write { .. }));
    }

    #[test]
    fn stacks_are_written_image_by_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        let mut w = NpyWriter::create::<f32>(&p, 3, &[2, 2]).unwrap();
        for i in 0..3 {
            w.push(&Array::from_elem((2, 2), i as f32)).unwrap();
            assert!(!p.exists());
        }
        assert!(w.push(&Array::from_elem((2, 2), 9.0_f32)).is_err());
        w.finish().unwrap();
        let back: ndarray::Array3<f32> = ndarray_npy::read_npy(&p).unwrap();
        assert_eq!(back[[2, 1, 1]], 2.0);
        // an incomplete stack is never published
        let q = dir.path().join("t.npy");
        let mut w = NpyWriter::create::<u8>(&q, 2, &[3]).unwrap();
        w.push(&arr1(&[1u8, 0, 1])).unwrap();
        assert!(w.finish().is_err());
        assert!(!q.exists());
    }
}
