//! Reading and writing NumPy `.npy` stacks (feature `npy`).
//!
//! Inputs are batch-first stacks `(N, spatial...)`: `N` score images or
//! masks of any dimension. Any common element type is read:
//!
//! | dtype | as scores ([`read_scores`]) | as masks ([`read_masks`]) | as indices ([`read_indices`]) |
//! |---|---|---|---|
//! | `bool` | 0.0 / 1.0 | as is | no |
//! | `int8`..`int64`, `uint8`..`uint64` | exact `f64` (error beyond 2^53) | 0 / 1 only | yes |
//! | `float16`, `float32`, `float64` | exact `f64`; NaN rejected | 0.0 / 1.0 only | no |
//!
//! Scores are widened to `f64` without changing any value: every `f16`,
//! `f32` and integer up to 2^53 is exactly representable, so thresholds
//! computed from an `int16` or `float32` file equal those computed from the
//! same numbers in `float64`. Little- and big-endian files and Fortran order
//! are read; Fortran-ordered data is returned in standard (row-major) layout.
//!
//! Errors name the file and what is wrong with it ([`FileProblem`]): empty
//! or truncated files, bad headers, unsupported dtypes (named), and for
//! contents the image index and voxel of the first NaN score or non-binary
//! mask value ([`Error::InFile`]).
//!
//! Writing ([`write_masks`], [`write_array`], [`write_atomic`]) goes to a
//! temporary file in the destination's directory that is renamed over the
//! destination only when complete: a failure never leaves a half-written file.
//!
//! ```
//! use confseg::io::{read_masks, read_scores, write_array, write_masks};
//! use confseg::synthetic::Synthetic;
//!
//! let dir = tempfile::tempdir().unwrap();
//! let (scores, masks) = Synthetic::new([16, 16]).seed(1).stack(0..5); // (5, 16, 16)
//! write_array(dir.path().join("scores.npy"), &scores.mapv(|x| x as f32))?;
//! write_masks(dir.path().join("masks.npy"), &masks)?;
//!
//! let s = read_scores(dir.path().join("scores.npy"))?; // f32 on disk, exact f64 here
//! let m = read_masks(dir.path().join("masks.npy"))?;
//! assert_eq!(s.shape(), &[5, 16, 16]);
//! assert_eq!(s[[2, 3, 4]], f64::from(scores[[2, 3, 4]] as f32));
//! assert_eq!(m, masks.into_dyn());
//! # Ok::<(), confseg::Error>(())
//! ```

use std::fmt;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use ndarray::{Array, ArrayD, ArrayRef, Dimension, IxDyn, ShapeBuilder};
use ndarray_npy::npy::header::{Header, ParseHeaderError, ReadHeaderError};
use ndarray_npy::{ReadDataError, ReadableElement, WritableElement, WriteNpyExt};

use crate::calibrate::unravel;
use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
use crate::mask::MaskValue;

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
    /// The dtype of a NumPy type descriptor such as `"<f4"`, `"|u1"` or
    /// `">i2"`; `None` for anything else (complex, strings, records, ...).
    #[must_use]
    pub fn from_descr(descr: &str) -> Option<Dtype> {
        let body = descr.strip_prefix(['<', '>', '|', '=']).unwrap_or(descr);
        Some(match body {
            "b1" | "?" => Dtype::Bool,
            "i1" | "b" => Dtype::I8,
            "i2" => Dtype::I16,
            "i4" => Dtype::I32,
            "i8" => Dtype::I64,
            "u1" | "B" => Dtype::U8,
            "u2" => Dtype::U16,
            "u4" => Dtype::U32,
            "u8" => Dtype::U64,
            "f2" => Dtype::F16,
            "f4" => Dtype::F32,
            "f8" => Dtype::F64,
            _ => return None,
        })
    }

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

fn file_error(path: &Path, problem: FileProblem) -> Error {
    Error::File { path: path.to_path_buf(), problem }
}

fn os_error(path: &Path, e: &std::io::Error) -> Error {
    file_error(path, FileProblem::Io { kind: e.kind(), message: e.to_string() })
}

fn in_file(path: &Path, error: Error) -> Error {
    Error::InFile { path: path.to_path_buf(), error: Box::new(error) }
}

/// An opened `.npy` file, positioned at the start of its data, whose size
/// has been checked against the header.
struct Opened {
    reader: BufReader<File>,
    header: Header,
    info: NpyInfo,
    len: usize,
}

/// Open `path`, parse the header with ndarray-npy and check the data size.
/// `expected` names the use (`"scores"`, ...) in dtype errors.
fn open(path: &Path, expected: &'static str) -> Result<Opened> {
    let file = File::open(path).map_err(|e| os_error(path, &e))?;
    let file_len = file.metadata().map_err(|e| os_error(path, &e))?.len();
    if file_len == 0 {
        return Err(file_error(path, FileProblem::Empty));
    }
    let mut reader = BufReader::new(file);
    let header = Header::from_reader(&mut reader).map_err(|e| {
        file_error(
            path,
            match e {
                ReadHeaderError::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    FileProblem::TruncatedHeader
                }
                ReadHeaderError::Io(e) => FileProblem::Io { kind: e.kind(), message: e.to_string() },
                ReadHeaderError::Parse(ParseHeaderError::MagicString) => FileProblem::NotNpy,
                ReadHeaderError::Parse(p) => FileProblem::BadHeader { reason: p.to_string() },
            },
        )
    })?;
    let header_len = reader.stream_position().map_err(|e| os_error(path, &e))?;
    let dtype = header.type_descriptor.as_string().and_then(|d| Dtype::from_descr(d)).ok_or_else(|| {
        file_error(
            path,
            FileProblem::UnsupportedDtype {
                dtype: header.type_descriptor.to_string(),
                expected,
                supported: ANY,
            },
        )
    })?;
    let too_large = || {
        file_error(path, FileProblem::BadHeader { reason: format!("shape {:?} is too large", header.shape) })
    };
    let len = header.shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or_else(too_large)?;
    let expected_bytes =
        u64::try_from(len).ok().and_then(|l| l.checked_mul(dtype.size() as u64)).ok_or_else(too_large)?;
    let found_bytes = file_len.saturating_sub(header_len);
    if found_bytes < expected_bytes {
        return Err(file_error(path, FileProblem::Truncated { expected_bytes, found_bytes }));
    }
    if found_bytes > expected_bytes {
        return Err(file_error(path, FileProblem::TrailingBytes { expected_bytes, found_bytes }));
    }
    let info = NpyInfo { dtype, shape: header.shape.clone(), fortran_order: header.layout.is_fortran() };
    Ok(Opened { reader, header, info, len })
}

/// The header of an `.npy` file: dtype, shape and order, without reading the data.
///
/// # Errors
/// [`Error::File`] if the file cannot be opened, is empty or truncated, has
/// an invalid header or an unsupported dtype.
pub fn inspect(path: impl AsRef<Path>) -> Result<NpyInfo> {
    open(path.as_ref(), "an array").map(|o| o.info)
}

/// An element type read from `.npy` data.
trait Element: MaskValue {
    /// NumPy name of the dtype.
    const NAME: &'static str;
    /// Whether every value converts to `f64` exactly.
    const ALWAYS_EXACT: bool = true;
    /// Read `len` elements (ndarray-npy's reader, which checks the descriptor
    /// and handles both byte orders).
    fn read_vec<R: Read>(reader: R, header: &Header, len: usize) -> Result<Vec<Self>, ReadDataError>;
    /// The value as `f64` (rounded if not [`Element::is_exact`]).
    fn to_f64_value(self) -> f64;
    /// Whether `to_f64_value` is exact.
    fn is_exact(self) -> bool {
        true
    }
    /// The value as an image index, for integer types.
    fn to_index(self) -> Option<i128> {
        None
    }
}

macro_rules! npy_element {
    ($($t:ty, $name:literal => |$x:ident| $to_f64:expr, index: $index:expr;)*) => {$(
        impl Element for $t {
            const NAME: &'static str = $name;
            fn read_vec<R: Read>(reader: R, header: &Header, len: usize) -> Result<Vec<Self>, ReadDataError> {
                <$t as ReadableElement>::read_to_end_exact_vec(reader, &header.type_descriptor, len)
            }
            #[allow(clippy::cast_lossless)]
            fn to_f64_value(self) -> f64 {
                let $x = self;
                $to_f64
            }
            #[allow(clippy::cast_lossless)]
            fn to_index(self) -> Option<i128> {
                let $x = self;
                $index
            }
        }
    )*};
}

npy_element! {
    bool, "bool" => |x| f64::from(u8::from(x)), index: { let _ = x; None };
    i8, "int8" => |x| f64::from(x), index: Some(i128::from(x));
    i16, "int16" => |x| f64::from(x), index: Some(i128::from(x));
    i32, "int32" => |x| f64::from(x), index: Some(i128::from(x));
    u8, "uint8" => |x| f64::from(x), index: Some(i128::from(x));
    u16, "uint16" => |x| f64::from(x), index: Some(i128::from(x));
    u32, "uint32" => |x| f64::from(x), index: Some(i128::from(x));
    f32, "float32" => |x| f64::from(x), index: { let _ = x; None };
    f64, "float64" => |x| x, index: { let _ = x; None };
}

// 64-bit integers: exact in f64 only up to 2^53 in magnitude (and some
// larger values); checked value by value.
impl Element for i64 {
    const NAME: &'static str = "int64";
    const ALWAYS_EXACT: bool = false;
    fn read_vec<R: Read>(reader: R, header: &Header, len: usize) -> Result<Vec<Self>, ReadDataError> {
        <i64 as ReadableElement>::read_to_end_exact_vec(reader, &header.type_descriptor, len)
    }
    #[allow(clippy::cast_precision_loss)]
    fn to_f64_value(self) -> f64 {
        self as f64
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    fn is_exact(self) -> bool {
        let f = self as f64;
        // 2^63 itself is out of range: `f as i64` would saturate and compare equal.
        f < 9_223_372_036_854_775_808.0 && f as i64 == self
    }
    fn to_index(self) -> Option<i128> {
        Some(i128::from(self))
    }
}

impl Element for u64 {
    const NAME: &'static str = "uint64";
    const ALWAYS_EXACT: bool = false;
    fn read_vec<R: Read>(reader: R, header: &Header, len: usize) -> Result<Vec<Self>, ReadDataError> {
        <u64 as ReadableElement>::read_to_end_exact_vec(reader, &header.type_descriptor, len)
    }
    #[allow(clippy::cast_precision_loss)]
    fn to_f64_value(self) -> f64 {
        self as f64
    }
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    fn is_exact(self) -> bool {
        let f = self as f64;
        f < 18_446_744_073_709_551_616.0 && f as u64 == self
    }
    fn to_index(self) -> Option<i128> {
        Some(i128::from(self))
    }
}

/// Half-precision floats. ndarray-npy 0.10 has no `float16` element type,
/// so the two-byte values are read here and decoded with the `half` crate.
#[derive(Debug, Clone, Copy, PartialEq)]
struct F16(half::f16);

impl MaskValue for F16 {
    fn is_binary(self) -> bool {
        let x = self.0.to_f32();
        x == 0.0 || x == 1.0
    }
    fn is_object(self) -> bool {
        self.0.to_f32() == 1.0
    }
    fn to_f64(self) -> f64 {
        self.0.to_f64()
    }
}

impl Element for F16 {
    const NAME: &'static str = "float16";
    fn read_vec<R: Read>(mut reader: R, header: &Header, len: usize) -> Result<Vec<Self>, ReadDataError> {
        let big_endian = header.type_descriptor.as_string().is_some_and(|d| d.starts_with('>'));
        let mut bytes = vec![0u8; len * 2];
        reader.read_exact(&mut bytes)?;
        Ok(bytes
            .chunks_exact(2)
            .map(|b| {
                let b = [b[0], b[1]];
                F16(half::f16::from_bits(if big_endian {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                }))
            })
            .collect())
    }
    fn to_f64_value(self) -> f64 {
        self.0.to_f64()
    }
}

/// What to do with the typed array read from a file (one generic function
/// per use, instantiated for each dtype by [`read_with`]).
trait Visitor {
    type Output;
    fn visit<T: Element>(self, path: &Path, data: ArrayD<T>) -> Result<Self::Output>;
}

fn read_typed<T: Element>(path: &Path, o: &mut Opened) -> Result<ArrayD<T>> {
    let data = T::read_vec(&mut o.reader, &o.header, o.len).map_err(|e| {
        file_error(
            path,
            match e {
                ReadDataError::Io(e) => FileProblem::Io { kind: e.kind(), message: e.to_string() },
                other => FileProblem::BadData { reason: other.to_string() },
            },
        )
    })?;
    let shape = IxDyn(&o.info.shape);
    let bad_len = |_| {
        file_error(path, FileProblem::BadHeader { reason: "data length does not match the shape".into() })
    };
    if o.info.fortran_order {
        let a = Array::from_shape_vec(shape.f(), data).map_err(bad_len)?;
        Ok(a.as_standard_layout().into_owned())
    } else {
        Array::from_shape_vec(shape, data).map_err(bad_len)
    }
}

fn read_with<V: Visitor>(path: &Path, expected: &'static str, visitor: V) -> Result<V::Output> {
    let mut o = open(path, expected)?;
    match o.info.dtype {
        Dtype::Bool => visitor.visit(path, read_typed::<bool>(path, &mut o)?),
        Dtype::I8 => visitor.visit(path, read_typed::<i8>(path, &mut o)?),
        Dtype::I16 => visitor.visit(path, read_typed::<i16>(path, &mut o)?),
        Dtype::I32 => visitor.visit(path, read_typed::<i32>(path, &mut o)?),
        Dtype::I64 => visitor.visit(path, read_typed::<i64>(path, &mut o)?),
        Dtype::U8 => visitor.visit(path, read_typed::<u8>(path, &mut o)?),
        Dtype::U16 => visitor.visit(path, read_typed::<u16>(path, &mut o)?),
        Dtype::U32 => visitor.visit(path, read_typed::<u32>(path, &mut o)?),
        Dtype::U64 => visitor.visit(path, read_typed::<u64>(path, &mut o)?),
        Dtype::F16 => visitor.visit(path, read_typed::<F16>(path, &mut o)?),
        Dtype::F32 => visitor.visit(path, read_typed::<f32>(path, &mut o)?),
        Dtype::F64 => visitor.visit(path, read_typed::<f64>(path, &mut o)?),
    }
}

const ANY: &str = "bool, int8..int64, uint8..uint64, float16, float32, float64";
const INTEGERS: &str = "int8..int64, uint8..uint64";
const STACK: &str = "a batch-first stack (N, spatial...) with at least 2 axes";

fn check_stack(path: &Path, shape: &[usize]) -> Result<()> {
    if shape.len() < 2 {
        return Err(file_error(path, FileProblem::WrongShape { shape: shape.to_vec(), expected: STACK }));
    }
    Ok(())
}

/// `[image, voxel...]` of a flat row-major position in a stack.
fn image_and_voxel(flat: usize, shape: &[usize]) -> (usize, Vec<usize>) {
    let idx = unravel(flat, shape);
    (idx[0], idx[1..].to_vec())
}

struct ToF64;

impl Visitor for ToF64 {
    type Output = ArrayD<f64>;
    fn visit<T: Element>(self, path: &Path, data: ArrayD<T>) -> Result<ArrayD<f64>> {
        if !T::ALWAYS_EXACT {
            if let Some(p) = data.iter().position(|x| !x.is_exact()) {
                let value = data.iter().nth(p).map_or_else(String::new, |x| format!("{}", x.to_f64()));
                let value = match data.iter().nth(p).and_then(|x| x.to_index()) {
                    Some(i) => i.to_string(),
                    None => value,
                };
                let index = unravel(p, data.shape());
                return Err(file_error(path, FileProblem::InexactValue { value, index }));
            }
        }
        Ok(data.mapv(T::to_f64_value))
    }
}

/// Read an `.npy` array of any supported dtype as `f64`, exactly (any
/// shape; NaN allowed). Most callers want [`read_scores`].
///
/// # Errors
/// [`Error::File`]: cannot open, empty, truncated, invalid header,
/// unsupported dtype, or a 64-bit integer that `f64` cannot hold exactly.
pub fn read_array(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    read_with(path, "an array", ToF64)
}

/// Read a batch-first stack `(N, spatial...)` of score images of any
/// supported dtype as `f64`, exactly.
///
/// The whole file is validated: a NaN anywhere is an error naming the
/// image and voxel (infinities are legal scores).
///
/// # Errors
/// As [`read_array`]; [`FileProblem::WrongShape`] for fewer than 2 axes;
/// [`Error::InFile`] wrapping [`Error::NanScore`] for a NaN.
pub fn read_scores(path: impl AsRef<Path>) -> Result<ArrayD<f64>> {
    let path = path.as_ref();
    let scores = read_with(path, "scores", ToF64)?;
    check_stack(path, scores.shape())?;
    if let Some(p) = scores.iter().position(|x| x.is_nan()) {
        let (image, index) = image_and_voxel(p, scores.shape());
        return Err(in_file(path, Error::NanScore { what: "scores", image: Some(image), index }));
    }
    Ok(scores)
}

struct ToMask;

impl Visitor for ToMask {
    type Output = ArrayD<bool>;
    fn visit<T: Element>(self, path: &Path, data: ArrayD<T>) -> Result<ArrayD<bool>> {
        check_stack(path, data.shape())?;
        if let Some(p) = data.iter().position(|v| !v.is_binary()) {
            let (image, index) = image_and_voxel(p, data.shape());
            let value = data.iter().nth(p).map_or(f64::NAN, |v| v.to_f64());
            return Err(in_file(path, Error::NonBinaryMask { image: Some(image), index, value }));
        }
        Ok(data.mapv(T::is_object))
    }
}

/// Read a batch-first stack `(N, spatial...)` of masks stored as bool,
/// integers or floats holding 0/1.
///
/// # Errors
/// As [`read_array`]; [`FileProblem::WrongShape`] for fewer than 2 axes;
/// [`Error::InFile`] wrapping [`Error::NonBinaryMask`] (image, voxel and
/// value) for the first value other than 0 or 1.
pub fn read_masks(path: impl AsRef<Path>) -> Result<ArrayD<bool>> {
    let path = path.as_ref();
    read_with(path, "masks", ToMask)
}

struct ToIndices {
    n_images: usize,
}

impl Visitor for ToIndices {
    type Output = Vec<usize>;
    fn visit<T: Element>(self, path: &Path, data: ArrayD<T>) -> Result<Vec<usize>> {
        if data.ndim() != 1 {
            return Err(file_error(
                path,
                FileProblem::WrongShape {
                    shape: data.shape().to_vec(),
                    expected: "a 1-D array of image indices",
                },
            ));
        }
        let mut first_seen = vec![None; self.n_images];
        let mut out = Vec::with_capacity(data.len());
        for (position, &x) in data.iter().enumerate() {
            let Some(value) = x.to_index() else {
                return Err(file_error(
                    path,
                    FileProblem::UnsupportedDtype {
                        dtype: T::NAME.to_owned(),
                        expected: "image indices",
                        supported: INTEGERS,
                    },
                ));
            };
            let i = usize::try_from(value).ok().filter(|&i| i < self.n_images).ok_or_else(|| {
                file_error(path, FileProblem::IndexOutOfRange { value, position, n_images: self.n_images })
            })?;
            if let Some(first) = first_seen[i] {
                return Err(file_error(
                    path,
                    FileProblem::DuplicateIndex { value: i, first, second: position },
                ));
            }
            first_seen[i] = Some(position);
            out.push(i);
        }
        Ok(out)
    }
}

/// Read 0-based image indices (a 1-D integer array) for a stack of
/// `n_images` images, in file order.
///
/// # Errors
/// [`Error::File`] if the file is not a 1-D integer array
/// ([`FileProblem::WrongShape`], [`FileProblem::UnsupportedDtype`]), an
/// index is negative or `>= n_images` ([`FileProblem::IndexOutOfRange`]),
/// or an index is listed twice ([`FileProblem::DuplicateIndex`]); and the
/// errors of [`read_array`].
pub fn read_indices(path: impl AsRef<Path>, n_images: usize) -> Result<Vec<usize>> {
    let path = path.as_ref();
    read_with(path, "image indices", ToIndices { n_images })
}

/// Write a file atomically: `write` fills a temporary file in the same
/// directory, which then replaces `path` in one rename. On any error the
/// temporary file is removed and `path` is left as it was.
///
/// # Errors
/// [`Error::File`] with [`FileProblem::Write`] if the directory is not
/// writable or `write` fails.
pub fn write_atomic<F>(path: impl AsRef<Path>, write: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> std::io::Result<()>,
{
    let path = path.as_ref();
    let fail = |e: &dyn fmt::Display| file_error(path, FileProblem::Write { message: e.to_string() });
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".confseg-").suffix(".tmp");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    let mut tmp = builder.tempfile_in(&dir).map_err(|e| fail(&e))?;
    {
        let mut w = BufWriter::new(tmp.as_file_mut());
        write(&mut w).map_err(|e| fail(&e))?;
        w.flush().map_err(|e| fail(&e))?;
    }
    tmp.as_file().sync_all().map_err(|e| fail(&e))?;
    tmp.persist(path).map_err(|e| fail(&e.error))?;
    Ok(())
}

fn write_npy<A: WritableElement, D: Dimension>(path: &Path, a: &ArrayRef<A, D>) -> Result<()> {
    write_atomic(path, |w| a.write_npy(w).map_err(std::io::Error::other))
}

/// Write masks as a `uint8` `.npy` array of 0/1 (same shape), atomically.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_masks<D: Dimension>(path: impl AsRef<Path>, masks: &ArrayRef<bool, D>) -> Result<()> {
    write_npy(path.as_ref(), &masks.mapv(u8::from))
}

/// Write a float array (`float32` or `float64`, same shape; infinities
/// kept), atomically.
///
/// # Errors
/// As [`write_atomic`].
pub fn write_array<A: Float + WritableElement, D: Dimension>(
    path: impl AsRef<Path>,
    array: &ArrayRef<A, D>,
) -> Result<()> {
    write_npy(path.as_ref(), array)
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
    fn every_integer_and_float_dtype_reads_exactly() {
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
        for n in ["i8", "i16", "i32", "i64", "f32", "f64"] {
            assert_eq!(read_scores(p(&format!("{n}.npy"))).unwrap(), want, "{n}");
        }
        let pos = base.mapv(|x| (x + 7) as u64);
        let want_pos = pos.mapv(|x| x as f64).into_dyn();
        npy_write(p("u8.npy"), &pos.mapv(|x| x as u8)).unwrap();
        npy_write(p("u16.npy"), &pos.mapv(|x| x as u16)).unwrap();
        npy_write(p("u32.npy"), &pos.mapv(|x| x as u32)).unwrap();
        npy_write(p("u64.npy"), &pos).unwrap();
        for n in ["u8", "u16", "u32", "u64"] {
            assert_eq!(read_scores(p(&format!("{n}.npy"))).unwrap(), want_pos, "{n}");
        }
        // f32 values that are not exact decimals stay bit-identical.
        let f = array![[[0.1_f32, -1e-30, f32::INFINITY, f32::NEG_INFINITY, f32::MAX]]];
        npy_write(p("f32b.npy"), &f).unwrap();
        let r = read_scores(p("f32b.npy")).unwrap();
        assert!(r.iter().zip(f.iter()).all(|(&a, &b)| a == f64::from(b)));
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
    fn float16_big_endian_and_fortran_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("h.npy");
        // float16 little-endian: 1.0 = 0x3C00, -2.0 = 0xC000, 0.5 = 0x3800, inf = 0x7C00
        let data: Vec<u8> =
            [0x3C00u16, 0xC000, 0x3800, 0x7C00].iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&p, raw_npy("<f2", "(2, 2)", false, &data)).unwrap();
        assert_eq!(read_scores(&p).unwrap(), array![[1.0, -2.0], [0.5, f64::INFINITY]].into_dyn());
        // big-endian int16, Fortran order: memory [1, 2, 3, 4] is [[1, 3], [2, 4]]
        let data: Vec<u8> = [1i16, 2, 3, 4].iter().flat_map(|v| v.to_be_bytes()).collect();
        std::fs::write(&p, raw_npy(">i2", "(2, 2)", true, &data)).unwrap();
        let a = read_scores(&p).unwrap();
        assert_eq!(a, array![[1.0, 3.0], [2.0, 4.0]].into_dyn());
        assert!(a.is_standard_layout());
        let info = inspect(&p).unwrap();
        assert_eq!(info, NpyInfo { dtype: Dtype::I16, shape: vec![2, 2], fortran_order: true });
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
    }

    #[test]
    fn masks_of_any_dtype() {
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
        let e = read_masks(p("bad.npy")).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("bad.npy")
                && msg.contains("image 1")
                && msg.contains("[0, 1]")
                && msg.contains("0.5"),
            "{msg}"
        );
    }

    #[test]
    fn nan_scores_name_file_image_and_voxel() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.npy");
        let mut s = Array3::<f32>::zeros((3, 4, 5));
        s[[2, 1, 3]] = f32::NAN;
        npy_write(&p, &s).unwrap();
        let e = read_scores(&p).unwrap_err();
        assert_eq!(
            e,
            Error::InFile {
                path: p.clone(),
                error: Box::new(Error::NanScore { what: "scores", image: Some(2), index: vec![1, 3] })
            }
        );
        assert!(e.to_string().ends_with("s.npy: NaN in scores of image 2 at voxel [1, 3]"), "{e}");
    }

    #[test]
    fn broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.npy");
        assert!(matches!(
            problem(read_scores(&p).unwrap_err()),
            FileProblem::Io { kind: std::io::ErrorKind::NotFound, .. }
        ));
        std::fs::write(&p, b"").unwrap();
        assert_eq!(problem(read_scores(&p).unwrap_err()), FileProblem::Empty);
        std::fs::write(&p, b"hello world, not numpy").unwrap();
        assert_eq!(problem(read_scores(&p).unwrap_err()), FileProblem::NotNpy);
        let good = raw_npy("<f8", "(2, 2)", false, &[0u8; 32]);
        std::fs::write(&p, &good[..20]).unwrap();
        assert_eq!(problem(read_scores(&p).unwrap_err()), FileProblem::TruncatedHeader);
        std::fs::write(&p, &good[..good.len() - 5]).unwrap();
        assert_eq!(
            problem(read_scores(&p).unwrap_err()),
            FileProblem::Truncated { expected_bytes: 32, found_bytes: 27 }
        );
        let mut long = good.clone();
        long.push(0);
        std::fs::write(&p, &long).unwrap();
        assert_eq!(
            problem(read_scores(&p).unwrap_err()),
            FileProblem::TrailingBytes { expected_bytes: 32, found_bytes: 33 }
        );
        std::fs::write(&p, raw_npy("<c16", "(1, 1)", false, &[0u8; 16])).unwrap();
        let e = read_scores(&p).unwrap_err();
        assert!(e.to_string().contains("unsupported dtype '<c16' for scores"), "{e}");
        std::fs::write(&p, raw_npy("<f8", "(4,)", false, &[0u8; 32])).unwrap();
        assert!(matches!(problem(read_scores(&p).unwrap_err()), FileProblem::WrongShape { .. }));
        assert!(matches!(problem(read_masks(&p).unwrap_err()), FileProblem::WrongShape { .. }));
        std::fs::write(&p, raw_npy("|b1", "(1, 2)", false, &[1, 2])).unwrap();
        assert!(matches!(problem(read_masks(&p).unwrap_err()), FileProblem::BadData { .. }));
        // 2^53 + 1 is not an f64
        npy_write(&p, &array![[9_007_199_254_740_993_i64, 1]]).unwrap();
        assert_eq!(
            problem(read_scores(&p).unwrap_err()),
            FileProblem::InexactValue { value: "9007199254740993".into(), index: vec![0, 0] }
        );
        npy_write(&p, &array![[9_007_199_254_740_992_i64, i64::MIN]]).unwrap();
        assert_eq!(read_scores(&p).unwrap()[[0, 1]], -9_223_372_036_854_775_808.0);
        npy_write(&p, &array![[u64::MAX]]).unwrap();
        assert!(matches!(problem(read_scores(&p).unwrap_err()), FileProblem::InexactValue { .. }));
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
        // a transposed (non-standard) view is written in its logical order
        let a = array![[1.0_f32, f32::NEG_INFINITY], [3.0, 4.0]];
        write_array(&p, &a.t()).unwrap();
        assert_eq!(read_array(&p).unwrap(), a.t().mapv(f64::from).into_dyn());
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
}
