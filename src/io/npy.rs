//! NumPy `.npy` files: the header, a stack reader that yields one image at
//! a time, and writers.
//!
//! The header is parsed here rather than by `ndarray-npy`: its length field
//! is checked against the file before anything is allocated, every size the
//! header declares is bounded, numpy-readable descriptors without a byte
//! order (`'f4'`) are accepted, and every problem is one line.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ndarray::{Array, ArrayD, ArrayRef, Dimension, IxDyn};

use super::{file_error, os_error, Dtype, NpyInfo, Precision};
use crate::error::{Error, FileProblem, Result};
use crate::float::Float;
use crate::grid::unravel;
use crate::mask::{Coding, Labels};

/// Longest header accepted (numpy itself refuses headers over 10000 bytes
/// unless told otherwise).
const MAX_HEADER: usize = 1 << 16;
/// Most axes accepted (numpy's limit).
const MAX_NDIM: usize = 64;

/// A parsed header and where the data starts.
#[derive(Debug, Clone)]
pub(crate) struct Header {
    pub(crate) info: NpyInfo,
    pub(crate) big_endian: bool,
    pub(crate) data_offset: u64,
}

fn bad_header(path: &Path, reason: impl Into<String>) -> Error {
    file_error(path, FileProblem::BadHeader { reason: reason.into() })
}

/// Read and check the header of `file` (of `file_len` bytes).
pub(crate) fn read_header(
    path: &Path,
    file: &mut File,
    file_len: u64,
    expected: &'static str,
) -> Result<Header> {
    if file_len == 0 {
        // a device (`/dev/zero`) or a pipe has no length either
        let regular = file.metadata().map_or(true, |m| m.is_file());
        return Err(file_error(path, if regular { FileProblem::Empty } else { FileProblem::NotRegular }));
    }
    read_header_from(path, file, file_len, expected)
}

/// Read and check the header of an array of `file_len` bytes read from
/// `file` (a file, or a member of an `.npz` archive).
pub(crate) fn read_header_from(
    path: &Path,
    file: &mut impl Read,
    file_len: u64,
    expected: &'static str,
) -> Result<Header> {
    if file_len == 0 {
        return Err(file_error(path, FileProblem::Empty));
    }
    let mut pre = [0u8; 8];
    let got = read_up_to(file, &mut pre).map_err(|e| os_error(path, &e))?;
    if got < 6 || &pre[..6] != b"\x93NUMPY" {
        return Err(file_error(
            path,
            if got < 6 && b"\x93NUMPY".starts_with(&pre[..got]) {
                FileProblem::TruncatedHeader
            } else {
                FileProblem::NotNpy
            },
        ));
    }
    if got < 8 {
        return Err(file_error(path, FileProblem::TruncatedHeader));
    }
    let (major, minor) = (pre[6], pre[7]);
    let len_bytes = match major {
        1 => 2,
        2 | 3 => 4,
        _ => return Err(bad_header(path, format!("unknown .npy format version {major}.{minor}"))),
    };
    let mut lb = [0u8; 4];
    if read_up_to(file, &mut lb[..len_bytes]).map_err(|e| os_error(path, &e))? < len_bytes {
        return Err(file_error(path, FileProblem::TruncatedHeader));
    }
    let header_len = u32::from_le_bytes(lb) as usize;
    let start = 8 + len_bytes as u64;
    if (header_len as u64) > file_len.saturating_sub(start) {
        return Err(file_error(path, FileProblem::TruncatedHeader));
    }
    if header_len > MAX_HEADER {
        return Err(bad_header(
            path,
            format!("the header declares {header_len} bytes; at most {MAX_HEADER} are read"),
        ));
    }
    let mut text = vec![0u8; header_len];
    file.read_exact(&mut text).map_err(|e| os_error(path, &e))?;
    // v1/v2 headers are latin-1, v3 UTF-8; the dictionary itself is ASCII.
    let text: String = text.iter().map(|&b| char::from(b)).collect();
    let dict = parse_dict(&text).map_err(|r| bad_header(path, r))?;
    let descr = dict.descr.ok_or_else(|| bad_header(path, "the header has no 'descr' key"))?;
    let fortran_order =
        dict.fortran_order.ok_or_else(|| bad_header(path, "the header has no 'fortran_order' key"))?;
    let shape = dict.shape.ok_or_else(|| bad_header(path, "the header has no 'shape' key"))?;
    let (dtype, big_endian) = parse_descr(&descr).ok_or_else(|| {
        file_error(
            path,
            FileProblem::UnsupportedDtype {
                dtype: format!("'{}'", crate::error::one_line(&descr)),
                expected,
                supported: super::ANY,
            },
        )
    })?;
    let too_large = || bad_header(path, format!("shape {shape:?} is too large"));
    // The bytes of the non-zero axes must be addressable (numpy's and
    // ndarray's bound): a zero-length axis makes the array empty, but not
    // its other axes' products, e.g. the images of a stack of no images.
    shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(dtype.size(), |a, &b| a.checked_mul(b))
        .filter(|&bytes| isize::try_from(bytes).is_ok())
        .ok_or_else(too_large)?;
    let len = shape.iter().try_fold(1usize, |a, &b| a.checked_mul(b)).ok_or_else(too_large)?;
    let expected_bytes =
        u64::try_from(len).ok().and_then(|l| l.checked_mul(dtype.size() as u64)).ok_or_else(too_large)?;
    let data_offset = start + header_len as u64;
    let found_bytes = file_len - data_offset;
    if found_bytes < expected_bytes {
        return Err(file_error(path, FileProblem::Truncated { expected_bytes, found_bytes }));
    }
    if found_bytes > expected_bytes {
        return Err(file_error(path, FileProblem::TrailingBytes { expected_bytes, found_bytes }));
    }
    Ok(Header { info: NpyInfo { dtype, shape, fortran_order }, big_endian, data_offset })
}

/// `read` until `buf` is full or the end of the file; the number of bytes read.
fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The three keys of an `.npy` header dictionary.
#[derive(Debug, Default, PartialEq)]
struct Dict {
    descr: Option<String>,
    fortran_order: Option<bool>,
    shape: Option<Vec<usize>>,
}

/// Parse the header's Python dictionary literal:
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }`.
fn parse_dict(text: &str) -> std::result::Result<Dict, String> {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    p.require(b'{')?;
    let mut d = Dict::default();
    loop {
        p.ws();
        if p.eat(b'}') {
            break;
        }
        let key = p.string()?;
        p.ws();
        p.require(b':')?;
        p.ws();
        match key.as_str() {
            "descr" => {
                if p.peek() == Some(b'[') {
                    return Err("structured dtypes (a list 'descr') are not supported".into());
                }
                d.descr = Some(p.string()?);
            }
            "fortran_order" => d.fortran_order = Some(p.boolean()?),
            "shape" => d.shape = Some(p.shape()?),
            other => return Err(format!("unexpected key {:?}", crate::error::one_line(other))),
        }
        p.ws();
        if !p.eat(b',') {
            p.ws();
            p.require(b'}')?;
            break;
        }
    }
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text after the dictionary at byte {}", p.i));
    }
    Ok(d)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }
    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn require(&mut self, c: u8) -> std::result::Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {} of the header dictionary", char::from(c), self.i))
        }
    }
    fn string(&mut self) -> std::result::Result<String, String> {
        let q = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            _ => return Err(format!("expected a quoted string at byte {}", self.i)),
        };
        self.i += 1;
        let start = self.i;
        while let Some(c) = self.peek() {
            if c == q {
                let out = String::from_utf8_lossy(&self.s[start..self.i]).into_owned();
                self.i += 1;
                return Ok(out);
            }
            if c == b'\\' || c == b'\n' {
                return Err(format!("unsupported character in a string at byte {}", self.i));
            }
            self.i += 1;
        }
        Err("unterminated string".into())
    }
    fn boolean(&mut self) -> std::result::Result<bool, String> {
        for (word, v) in [("True", true), ("False", false)] {
            if self.s[self.i..].starts_with(word.as_bytes()) {
                self.i += word.len();
                return Ok(v);
            }
        }
        Err(format!("expected True or False at byte {}", self.i))
    }
    fn shape(&mut self) -> std::result::Result<Vec<usize>, String> {
        self.require(b'(')?;
        let mut out = Vec::new();
        loop {
            self.ws();
            if self.eat(b')') {
                return Ok(out);
            }
            let start = self.i;
            while matches!(self.peek(), Some(b'0'..=b'9')) {
                self.i += 1;
            }
            if start == self.i {
                return Err(format!("expected a non-negative integer in 'shape' at byte {}", self.i));
            }
            let digits = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
            let n: usize = digits.parse().map_err(|_| format!("shape entry {digits} is too large"))?;
            self.eat(b'L'); // Python 2 long suffix
            out.push(n);
            if out.len() > MAX_NDIM {
                return Err(format!("more than {MAX_NDIM} axes"));
            }
            self.ws();
            if !self.eat(b',') {
                self.ws();
                self.require(b')')?;
                return Ok(out);
            }
        }
    }
}

/// Dtype and byte order of a numpy type descriptor: `'<f4'`, `'|u1'`,
/// `'f4'`, `'<b1'`, `'?'`, `'float32'`, ...; `None` for anything else.
fn parse_descr(descr: &str) -> Option<(Dtype, bool)> {
    let native_big = cfg!(target_endian = "big");
    let (big, body) = match descr.as_bytes().first() {
        Some(b'<') => (false, &descr[1..]),
        Some(b'>') => (true, &descr[1..]),
        Some(b'|' | b'=') => (native_big, &descr[1..]),
        _ => (native_big, descr),
    };
    let dtype = match body {
        "b1" | "?" | "bool" => Dtype::Bool,
        "i1" | "b" | "int8" => Dtype::I8,
        "i2" | "h" | "int16" => Dtype::I16,
        "i4" | "i" | "int32" => Dtype::I32,
        "i8" | "l" | "q" | "int64" => Dtype::I64,
        "u1" | "B" | "uint8" => Dtype::U8,
        "u2" | "H" | "uint16" => Dtype::U16,
        "u4" | "I" | "uint32" => Dtype::U32,
        "u8" | "L" | "Q" | "uint64" => Dtype::U64,
        "f2" | "e" | "float16" => Dtype::F16,
        "f4" | "f" | "float32" => Dtype::F32,
        "f8" | "d" | "float64" => Dtype::F64,
        _ => return None,
    };
    Some((dtype, big && dtype.size() > 1))
}

/// One element type's values decoded from raw bytes.
fn decode<T: Copy, const N: usize>(bytes: &[u8], big: bool, f: impl Fn([u8; N]) -> T, out: &mut Vec<T>) {
    out.clear();
    out.extend(bytes.chunks_exact(N).map(|c| {
        let mut b = [0u8; N];
        b.copy_from_slice(c);
        if big {
            b.reverse();
        }
        f(b)
    }));
}

/// Raw values of one dtype, widened to what they are compared as: exact
/// `f64` for scores of every dtype, `i128` for labels of integer dtypes.
#[derive(Clone, Copy)]
enum Value {
    Int(i128),
    Float(f64),
}

/// Decode `bytes` of `dtype` as a sequence of values, calling `f(position, value)`.
fn for_each_value(bytes: &[u8], dtype: Dtype, big: bool, mut f: impl FnMut(usize, Value)) {
    macro_rules! each {
        ($n:literal, $conv:expr) => {
            for (p, c) in bytes.chunks_exact($n).enumerate() {
                let mut b = [0u8; $n];
                b.copy_from_slice(c);
                if big {
                    b.reverse();
                }
                #[allow(clippy::redundant_closure_call)]
                f(p, $conv(b));
            }
        };
    }
    match dtype {
        Dtype::Bool => each!(1, |b: [u8; 1]| Value::Int(i128::from(b[0]))),
        Dtype::I8 => each!(1, |b| Value::Int(i128::from(i8::from_le_bytes(b)))),
        Dtype::U8 => each!(1, |b| Value::Int(i128::from(u8::from_le_bytes(b)))),
        Dtype::I16 => each!(2, |b| Value::Int(i128::from(i16::from_le_bytes(b)))),
        Dtype::U16 => each!(2, |b| Value::Int(i128::from(u16::from_le_bytes(b)))),
        Dtype::I32 => each!(4, |b| Value::Int(i128::from(i32::from_le_bytes(b)))),
        Dtype::U32 => each!(4, |b| Value::Int(i128::from(u32::from_le_bytes(b)))),
        Dtype::I64 => each!(8, |b| Value::Int(i128::from(i64::from_le_bytes(b)))),
        Dtype::U64 => each!(8, |b| Value::Int(i128::from(u64::from_le_bytes(b)))),
        Dtype::F16 => each!(2, |b| Value::Float(half::f16::from_le_bytes(b).to_f64())),
        Dtype::F32 => each!(4, |b| Value::Float(f64::from(f32::from_le_bytes(b)))),
        Dtype::F64 => each!(8, |b| Value::Float(f64::from_le_bytes(b))),
    }
}

/// A float type scores are read into: `f32` (for `float16`, `float32`, and
/// integers of up to 16 bits, all exact in `f32`) or `f64` (every dtype;
/// 64-bit integers must be exact).
pub trait ReadFloat: Float + sealed::Sealed {
    /// Decode one image's bytes of `dtype` into `out`.
    ///
    /// # Errors
    /// The flat position and text of the first value that this type
    /// cannot hold exactly.
    #[doc(hidden)]
    fn decode_scores(
        bytes: &[u8],
        dtype: Dtype,
        big: bool,
        out: &mut Vec<Self>,
    ) -> std::result::Result<(), (usize, String)>;

    /// The values' bytes, to read them in place.
    #[doc(hidden)]
    fn as_bytes_mut(values: &mut [Self]) -> &mut [u8];
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// Integer value as `f64` if exact.
fn exact_f64(v: i128) -> Option<f64> {
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
    let f = v as f64;
    (f.abs() < 1.8e19 && f as i128 == v).then_some(f)
}

impl ReadFloat for f32 {
    fn as_bytes_mut(values: &mut [f32]) -> &mut [u8] {
        bytemuck::cast_slice_mut(values)
    }

    fn decode_scores(
        bytes: &[u8],
        dtype: Dtype,
        big: bool,
        out: &mut Vec<f32>,
    ) -> std::result::Result<(), (usize, String)> {
        match dtype {
            Dtype::F32 => decode(bytes, big, f32::from_le_bytes, out),
            _ if Precision::of(dtype) == Precision::F32 => {
                out.clear();
                out.reserve(bytes.len() / dtype.size());
                // every value of these dtypes is an f32 exactly
                #[allow(clippy::cast_possible_truncation)]
                for_each_value(bytes, dtype, big, |_, v| {
                    out.push(match v {
                        Value::Int(i) => i as f32,
                        Value::Float(x) => x as f32,
                    });
                });
            }
            _ => return Err((0, format!("{dtype} values need float64"))),
        }
        Ok(())
    }
}

impl ReadFloat for f64 {
    fn as_bytes_mut(values: &mut [f64]) -> &mut [u8] {
        bytemuck::cast_slice_mut(values)
    }

    fn decode_scores(
        bytes: &[u8],
        dtype: Dtype,
        big: bool,
        out: &mut Vec<f64>,
    ) -> std::result::Result<(), (usize, String)> {
        match dtype {
            Dtype::F64 => decode(bytes, big, f64::from_le_bytes, out),
            _ => {
                out.clear();
                out.reserve(bytes.len() / dtype.size());
                let mut bad = None;
                for_each_value(bytes, dtype, big, |p, v| {
                    out.push(match v {
                        Value::Float(x) => x,
                        Value::Int(i) => exact_f64(i).unwrap_or_else(|| {
                            bad.get_or_insert((p, i.to_string()));
                            0.0
                        }),
                    });
                });
                if let Some(b) = bad {
                    return Err(b);
                }
            }
        }
        Ok(())
    }
}

/// A batch-first `.npy` stack `(N, spatial...)` opened for reading one
/// image at a time; see the [module docs](super).
///
/// Opening reads only the header: shape, dtype and the size of the file
/// are checked, and images with zero voxels are refused, before anything is
/// allocated per image. Images are then read on demand, each with one
/// positioned read of its bytes straight into the array's buffer (for
/// C-ordered files, which is what numpy writes). Reads take `&self`: clones
/// share the open file, and threads may read different images at once. A
/// Fortran-ordered stack is read whole on first use.
#[derive(Debug, Clone)]
pub struct NpyStack {
    path: PathBuf,
    header: Header,
    image_len: usize,
    file: Arc<File>,
    fortran: Arc<OnceLock<std::result::Result<Vec<u8>, Error>>>,
}

impl NpyStack {
    /// Open a stack; `what` names its use in dtype errors (`"scores"`, `"masks"`).
    ///
    /// # Errors
    /// [`Error::File`]: cannot open, empty, truncated, invalid header or
    /// unsupported dtype; [`FileProblem::WrongShape`] for fewer than two axes;
    /// [`FileProblem::EmptyImages`] for images with no voxels.
    pub fn open(path: impl AsRef<Path>, what: &'static str) -> Result<NpyStack> {
        let path = path.as_ref();
        let mut file = File::open(path).map_err(|e| os_error(path, &e))?;
        let len = file.metadata().map_err(|e| os_error(path, &e))?.len();
        let header = read_header(path, &mut file, len, what)?;
        let shape = &header.info.shape;
        if shape.len() < 2 {
            return Err(file_error(
                path,
                FileProblem::WrongShape { shape: shape.clone(), expected: super::STACK },
            ));
        }
        let image_len: usize = shape[1..].iter().product();
        if image_len == 0 {
            return Err(file_error(path, FileProblem::EmptyImages { shape: shape.clone() }));
        }
        Ok(NpyStack {
            path: path.to_path_buf(),
            header,
            image_len,
            file: Arc::new(file),
            fortran: Arc::new(OnceLock::new()),
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Dtype, shape and order from the header.
    #[must_use]
    pub fn info(&self) -> &NpyInfo {
        &self.header.info
    }

    /// Number of images `N`.
    #[must_use]
    pub fn len(&self) -> usize {
        self.header.info.shape[0]
    }

    /// Whether the stack holds no image.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape of one image.
    #[must_use]
    pub fn image_shape(&self) -> &[usize] {
        &self.header.info.shape[1..]
    }

    /// The float type that holds this file's values exactly.
    #[must_use]
    pub fn precision(&self) -> Precision {
        Precision::of(self.header.info.dtype)
    }

    fn image_bytes(&self) -> usize {
        self.image_len * self.header.info.dtype.size()
    }

    fn check_index(&self, i: usize) -> Result<()> {
        let n = self.len();
        if i >= n {
            return Err(file_error(
                &self.path,
                FileProblem::IndexOutOfRange { value: i as i128, position: 0, n_images: n },
            ));
        }
        Ok(())
    }

    /// Read `buf.len()` bytes at data offset `at` (a positioned read: no
    /// shared file position, so threads may read at once).
    fn read_at(&self, buf: &mut [u8], at: u64) -> Result<()> {
        let at = self.header.data_offset + at;
        #[cfg(unix)]
        let r = {
            use std::os::unix::fs::FileExt;
            self.file.read_exact_at(buf, at)
        };
        #[cfg(not(unix))]
        let r = File::open(&self.path).and_then(|mut f| {
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at))?;
            f.read_exact(buf)
        });
        r.map_err(|e| os_error(&self.path, &e))
    }

    /// Raw bytes of image `i` in row-major order, into `buf`.
    fn read_raw(&self, i: usize, buf: &mut Vec<u8>) -> Result<()> {
        self.check_index(i)?;
        let size = self.header.info.dtype.size();
        let bytes = self.image_bytes();
        buf.try_reserve(bytes.saturating_sub(buf.len()))
            .map_err(|_| Error::OutOfMemory { bytes: bytes as u64, what: "an image" })?;
        buf.resize(bytes, 0);
        if self.header.info.fortran_order {
            let all = self
                .fortran
                .get_or_init(|| {
                    let mut all =
                        crate::alloc::try_zeroed::<u8>(self.len() * bytes, "a Fortran-ordered stack")?;
                    self.read_at(&mut all, 0).map(|()| all)
                })
                .as_ref()
                .map_err(Clone::clone)?;
            // element (i, j) of an F-ordered (N, spatial...) array lies at
            // i + N * (F-order position of j in the image)
            let shape = self.image_shape();
            let mut strides = vec![0usize; shape.len()];
            let mut s = self.len();
            for (k, &len) in shape.iter().enumerate() {
                strides[k] = s;
                s *= len;
            }
            for p in 0..self.image_len {
                let idx = unravel(p, shape);
                let e = i + idx.iter().zip(&strides).map(|(a, b)| a * b).sum::<usize>();
                buf[p * size..(p + 1) * size].copy_from_slice(&all[e * size..(e + 1) * size]);
            }
            return Ok(());
        }
        self.read_at(buf, (i as u64) * (bytes as u64))
    }

    fn array<T>(&self, v: Vec<T>) -> Result<ArrayD<T>> {
        Array::from_shape_vec(IxDyn(self.image_shape()), v).map_err(|_| {
            file_error(
                &self.path,
                FileProblem::BadData { reason: "data length does not match the shape".into() },
            )
        })
    }

    /// Score image `i` in the float type `A` (see [`ReadFloat`]): read
    /// straight into the array when the file holds `A` in this machine's
    /// byte order, else decoded exactly.
    ///
    /// # Errors
    /// [`FileProblem::IndexOutOfRange`]; an I/O error;
    /// [`FileProblem::InexactValue`] for a value `A` cannot hold exactly.
    pub fn read_scores<A: ReadFloat>(&self, i: usize) -> Result<ArrayD<A>> {
        let info = &self.header.info;
        let native = info.dtype.name() == A::NAME && !self.header.big_endian && !info.fortran_order;
        if native {
            self.check_index(i)?;
            let mut v = vec![A::zero(); self.image_len];
            self.read_at(A::as_bytes_mut(&mut v), (i as u64) * (self.image_bytes() as u64))?;
            return self.array(v);
        }
        let mut buf = Vec::new();
        self.read_raw(i, &mut buf)?;
        let mut out = Vec::new();
        A::decode_scores(&buf, info.dtype, self.header.big_endian, &mut out).map_err(|(p, value)| {
            let mut index = vec![i];
            index.extend(unravel(p, self.image_shape()));
            file_error(&self.path, FileProblem::InexactValue { value, index })
        })?;
        self.array(out)
    }

    /// Mask image `i` as `0`/`1` bytes, with object voxels chosen by `labels`
    /// (a [`Labels`], or a [`Coding`] whose ignored voxels are 2:
    /// [`Voxel::code`](crate::mask::Voxel::code)).
    /// A `uint8`/`bool` file read as a binary mask is passed on as it is
    /// (the consumers check every value as they read it).
    ///
    /// # Errors
    /// As [`NpyStack::read_scores`]; [`Error::InFile`] with
    /// [`Error::NonBinaryMask`] or [`Error::InvalidLabel`] for a value that
    /// `labels` does not accept.
    pub fn read_mask(&self, i: usize, labels: impl Into<Coding>) -> Result<ArrayD<u8>> {
        let labels = &labels.into();
        let mut buf = Vec::new();
        self.read_raw(i, &mut buf)?;
        let dtype = self.header.info.dtype;
        if matches!(dtype, Dtype::U8 | Dtype::Bool) && passes_bytes(labels) {
            return self.array(buf);
        }
        let out = binarize(&buf, dtype, self.header.big_endian, labels)
            .map_err(|(p, e)| self.mask_error(i, p, e))?;
        self.array(out)
    }

    /// Voxels `start..start + len` (row-major) of score image `i`, into
    /// `out` (resized to `len`; its buffer is reused from call to call),
    /// with `scratch` for dtypes that need decoding.
    ///
    /// # Errors
    /// As [`NpyStack::read_scores`]; [`FileProblem::IndexOutOfRange`] for a
    /// range past the image's end.
    pub fn read_scores_range<A: ReadFloat>(
        &self,
        i: usize,
        start: usize,
        len: usize,
        out: &mut Vec<A>,
        scratch: &mut Vec<u8>,
    ) -> Result<()> {
        self.check_range(i, start, len)?;
        let info = &self.header.info;
        if info.fortran_order {
            let whole = self.read_scores::<A>(i)?;
            out.clear();
            out.extend(whole.iter().skip(start).take(len));
            return Ok(());
        }
        let size = info.dtype.size() as u64;
        let at = (i as u64) * (self.image_bytes() as u64) + (start as u64) * size;
        if info.dtype.name() == A::NAME && !self.header.big_endian {
            out.resize(len, A::zero());
            return self.read_at(A::as_bytes_mut(out), at);
        }
        scratch.resize(len * info.dtype.size(), 0);
        self.read_at(scratch, at)?;
        A::decode_scores(scratch, info.dtype, self.header.big_endian, out).map_err(|(p, value)| {
            let mut index = vec![i];
            index.extend(unravel(start + p, self.image_shape()));
            file_error(&self.path, FileProblem::InexactValue { value, index })
        })
    }

    /// Voxels `start..start + len` (row-major) of mask `i` as `0`/`1` bytes
    /// chosen by `labels`, into `out` (resized to `len`).
    ///
    /// # Errors
    /// As [`NpyStack::read_mask`].
    pub fn read_mask_range(
        &self,
        i: usize,
        start: usize,
        len: usize,
        labels: impl Into<Coding>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let labels = &labels.into();
        self.check_range(i, start, len)?;
        let info = &self.header.info;
        let dtype = info.dtype;
        if info.fortran_order {
            let whole = self.read_mask(i, labels)?;
            out.clear();
            out.extend(whole.iter().skip(start).take(len));
            return Ok(());
        }
        let size = dtype.size() as u64;
        let at = (i as u64) * (self.image_bytes() as u64) + (start as u64) * size;
        if matches!(dtype, Dtype::U8 | Dtype::Bool) && passes_bytes(labels) {
            out.resize(len, 0);
            return self.read_at(out, at);
        }
        let mut raw = crate::alloc::try_zeroed::<u8>(len * dtype.size(), "a mask")?;
        self.read_at(&mut raw, at)?;
        *out = binarize(&raw, dtype, self.header.big_endian, labels)
            .map_err(|(p, e)| self.mask_error(i, start + p, e))?;
        Ok(())
    }

    /// A bad mask value at flat voxel `p` of image `i`, with its index and the file.
    fn mask_error(&self, i: usize, p: usize, e: Error) -> Error {
        let index = unravel(p, self.image_shape());
        let in_image = match e {
            Error::NonBinaryMask { value, .. } => Error::NonBinaryMask { image: Some(i), index, value },
            Error::InvalidLabel { value, .. } => Error::InvalidLabel { image: Some(i), index, value },
            other => other,
        };
        super::in_file(&self.path, in_image)
    }

    fn check_range(&self, i: usize, start: usize, len: usize) -> Result<()> {
        self.check_index(i)?;
        if start.checked_add(len).is_none_or(|end| end > self.image_len) {
            return Err(file_error(
                &self.path,
                FileProblem::IndexOutOfRange {
                    value: (start as i128) + (len as i128),
                    position: i,
                    n_images: self.image_len,
                },
            ));
        }
        Ok(())
    }

    /// The score images at `indices`, in that order, read one at a time.
    pub fn images<A: ReadFloat>(&self, indices: Vec<usize>) -> Images<A> {
        Images { stack: self.clone(), indices: indices.into_iter(), _a: std::marker::PhantomData }
    }

    /// The masks at `indices`, in that order, as `0`/`1` bytes chosen by `labels`.
    pub fn masks(&self, indices: Vec<usize>, labels: impl Into<Coding>) -> Masks {
        Masks { stack: self.clone(), indices: indices.into_iter(), labels: labels.into() }
    }
}

/// Iterator over score images of an [`NpyStack`] (see [`NpyStack::images`]).
#[derive(Debug)]
pub struct Images<A> {
    stack: NpyStack,
    indices: std::vec::IntoIter<usize>,
    _a: std::marker::PhantomData<A>,
}

impl<A: ReadFloat> Iterator for Images<A> {
    type Item = Result<ArrayD<A>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.indices.next().map(|i| self.stack.read_scores(i))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

/// Iterator over masks of an [`NpyStack`] (see [`NpyStack::masks`]).
#[derive(Debug)]
pub struct Masks {
    stack: NpyStack,
    indices: std::vec::IntoIter<usize>,
    labels: Coding,
}

impl Iterator for Masks {
    type Item = Result<ArrayD<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.indices.next().map(|i| self.stack.read_mask(i, &self.labels))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.indices.size_hint()
    }
}

/// Whether a `uint8`/`bool` file read with `coding` is its own bytes (a
/// binary mask with no ignore value).
fn passes_bytes(coding: &Coding) -> bool {
    *coding.labels() == Labels::Binary && coding.ignore().is_none()
}

/// `0`/`1` bytes (2 for ignored voxels) of a mask or label map of any
/// dtype; on failure the flat position and the error (image and index
/// filled in by the caller).
pub(crate) fn binarize(
    bytes: &[u8],
    dtype: Dtype,
    big: bool,
    labels: &Coding,
) -> std::result::Result<Vec<u8>, (usize, Error)> {
    let mut out = Vec::with_capacity(bytes.len() / dtype.size());
    let mut bad: Option<(usize, Error)> = None;
    for_each_value(bytes, dtype, big, |p, v| {
        let value = match v {
            Value::Int(i) => Some(i),
            #[allow(clippy::cast_possible_truncation)]
            Value::Float(x) => (x.fract() == 0.0 && x.abs() < 1e18).then_some(x as i128),
        };
        match labels.voxel(value) {
            Some(o) => out.push(o.code()),
            None => {
                out.push(0);
                if bad.is_none() {
                    let as_f64 = match v {
                        #[allow(clippy::cast_precision_loss)]
                        Value::Int(i) => i as f64,
                        Value::Float(x) => x,
                    };
                    let e = if *labels.labels() == Labels::Binary {
                        Error::NonBinaryMask { image: None, index: Vec::new(), value: as_f64 }
                    } else {
                        Error::InvalidLabel { image: None, index: Vec::new(), value: as_f64 }
                    };
                    bad = Some((p, e));
                }
            }
        }
    });
    match bad {
        Some(b) => Err(b),
        None => Ok(out),
    }
}

/// One whole `.npy` array (one image, any number of axes, no batch axis):
/// its header, after the checks of [`NpyStack::open`] (bounded sizes, no
/// zero-voxel image).
fn open_image(path: &Path, what: &'static str) -> Result<(File, Header)> {
    let mut file = File::open(path).map_err(|e| os_error(path, &e))?;
    let len = file.metadata().map_err(|e| os_error(path, &e))?.len();
    let header = read_header(path, &mut file, len, what)?;
    if header.info.shape.is_empty() || header.info.shape.contains(&0) {
        return Err(file_error(path, FileProblem::EmptyImages { shape: header.info.shape.clone() }));
    }
    Ok((file, header))
}

/// The bytes of a whole array in row-major order.
pub(crate) fn image_bytes(path: &Path, file: &mut impl Read, header: &Header) -> Result<Vec<u8>> {
    let info = &header.info;
    let len = crate::alloc::check_elements("an image", &info.shape)?;
    let mut bytes = crate::alloc::try_zeroed::<u8>(len * info.dtype.size(), "an image")?;
    file.read_exact(&mut bytes).map_err(|e| os_error(path, &e))?;
    if info.fortran_order && info.shape.len() > 1 {
        // gather the row-major order from the column-major file
        let size = info.dtype.size();
        let mut out = crate::alloc::try_zeroed::<u8>(bytes.len(), "an image")?;
        let shape = &info.shape;
        let mut strides = vec![1usize; shape.len()];
        for k in 1..shape.len() {
            strides[k] = strides[k - 1] * shape[k - 1];
        }
        for p in 0..len {
            let idx = unravel(p, shape);
            let e: usize = idx.iter().zip(&strides).map(|(a, b)| a * b).sum();
            out[p * size..(p + 1) * size].copy_from_slice(&bytes[e * size..(e + 1) * size]);
        }
        return Ok(out);
    }
    Ok(bytes)
}

/// Read one image stored alone in a `.npy` file (any number of axes, no
/// batch axis; e.g. one subject's scores) in the float type `A`.
///
/// # Errors
/// As [`NpyStack::open`] (no axis, or a zero-length one, is
/// [`FileProblem::EmptyImages`]); [`FileProblem::InexactValue`] for a value
/// `A` cannot hold exactly.
pub fn read_image<A: ReadFloat>(path: impl AsRef<Path>) -> Result<ArrayD<A>> {
    let path = path.as_ref();
    let (mut file, header) = open_image(path, "scores")?;
    decode_image(path, &mut file, &header)
}

/// The scores of one whole array whose header was read from `file`.
pub(crate) fn decode_image<A: ReadFloat>(
    path: &Path,
    file: &mut impl Read,
    header: &Header,
) -> Result<ArrayD<A>> {
    let bytes = image_bytes(path, file, header)?;
    let mut out = Vec::new();
    A::decode_scores(&bytes, header.info.dtype, header.big_endian, &mut out).map_err(|(p, value)| {
        file_error(path, FileProblem::InexactValue { value, index: unravel(p, &header.info.shape) })
    })?;
    Array::from_shape_vec(IxDyn(&header.info.shape), out).map_err(|_| {
        file_error(path, FileProblem::BadData { reason: "data length does not match the shape".into() })
    })
}

/// Read one mask or label map stored alone in a `.npy` file as `0`/`1`
/// bytes chosen by `labels`.
///
/// # Errors
/// As [`read_image`]; [`Error::InFile`] with [`Error::NonBinaryMask`] or
/// [`Error::InvalidLabel`] naming the voxel.
pub fn read_mask_image(path: impl AsRef<Path>, labels: impl Into<Coding>) -> Result<ArrayD<u8>> {
    let path = path.as_ref();
    let labels = &labels.into();
    let (mut file, header) = open_image(path, "masks")?;
    let bytes = image_bytes(path, &mut file, &header)?;
    let shape = &header.info.shape;
    let out = binarize(&bytes, header.info.dtype, header.big_endian, labels).map_err(|(p, e)| {
        let index = unravel(p, shape);
        let e = match e {
            Error::NonBinaryMask { value, .. } => Error::NonBinaryMask { image: None, index, value },
            Error::InvalidLabel { value, .. } => Error::InvalidLabel { image: None, index, value },
            other => other,
        };
        super::in_file(path, e)
    })?;
    Array::from_shape_vec(IxDyn(shape), out).map_err(|_| {
        file_error(path, FileProblem::BadData { reason: "data length does not match the shape".into() })
    })
}

/// The header of a single-image `.npy` file, checked as [`read_image`] does.
///
/// # Errors
/// As [`read_image`], without reading the data.
pub fn image_info(path: impl AsRef<Path>) -> Result<NpyInfo> {
    open_image(path.as_ref(), "an image").map(|(_, h)| h.info)
}

/// A `.npy` writer for a stack whose shape is known in advance, filled one
/// image at a time and published atomically by [`NpyWriter::finish`]
/// (nothing is at the destination before; dropping the writer leaves the
/// destination untouched).
#[derive(Debug)]
pub struct NpyWriter {
    out: super::Output,
    dtype: Dtype,
    remaining: usize,
    image_len: usize,
}

/// Element types the writer stores: `u8`, `f32`, `f64`.
pub trait WriteElement: Copy + sealed_w::Sealed {
    /// The dtype written.
    const DTYPE: Dtype;
    /// Little-endian bytes of the value.
    #[doc(hidden)]
    fn put(self, out: &mut Vec<u8>);
}

mod sealed_w {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

impl WriteElement for u8 {
    const DTYPE: Dtype = Dtype::U8;
    fn put(self, out: &mut Vec<u8>) {
        out.push(self);
    }
}
impl WriteElement for f32 {
    const DTYPE: Dtype = Dtype::F32;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}
impl WriteElement for f64 {
    const DTYPE: Dtype = Dtype::F64;
    fn put(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_le_bytes());
    }
}

/// The `.npy` header (version 1.0 unless the dictionary needs more) for a
/// C-ordered array.
fn header_bytes(dtype: Dtype, shape: &[usize]) -> Vec<u8> {
    let descr = match dtype {
        Dtype::Bool => "|b1".to_owned(),
        Dtype::I8 => "|i1".to_owned(),
        Dtype::U8 => "|u1".to_owned(),
        d => format!(
            "<{}{}",
            if d.is_float() {
                'f'
            } else if matches!(d, Dtype::U16 | Dtype::U32 | Dtype::U64) {
                'u'
            } else {
                'i'
            },
            d.size()
        ),
    };
    let shape_text = match shape {
        [one] => format!("({one},)"),
        _ => format!("({})", shape.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    };
    let mut dict =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape_text}, }}").into_bytes();
    let v1 = 10 + dict.len() < 65536;
    let pre = if v1 { 10 } else { 12 };
    while (pre + dict.len() + 1) % 64 != 0 {
        dict.push(b' ');
    }
    dict.push(b'\n');
    let mut out = b"\x93NUMPY".to_vec();
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&u16::try_from(dict.len()).unwrap_or(u16::MAX).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&u32::try_from(dict.len()).unwrap_or(u32::MAX).to_le_bytes());
    }
    out.extend_from_slice(&dict);
    out
}

impl NpyWriter {
    /// Start a stack of `n` images of `image_shape` with element type `T`.
    ///
    /// # Errors
    /// As [`super::Output::create`].
    pub fn create<T: WriteElement>(
        path: impl AsRef<Path>,
        n: usize,
        image_shape: &[usize],
    ) -> Result<NpyWriter> {
        let mut out = super::Output::create(path)?;
        let mut shape = vec![n];
        shape.extend_from_slice(image_shape);
        let h = header_bytes(T::DTYPE, &shape);
        let path = out.path().to_path_buf();
        out.write_all(&h).map_err(|e| file_error(&path, FileProblem::Write { message: e.to_string() }))?;
        Ok(NpyWriter { out, dtype: T::DTYPE, remaining: n, image_len: image_shape.iter().product() })
    }

    /// Append the next image (any layout; written in row-major order).
    ///
    /// # Errors
    /// [`Error::ShapeMismatch`] for an image of another size or type, or
    /// more images than announced; a write failure.
    pub fn push<T: WriteElement, D: Dimension>(&mut self, image: &ArrayRef<T, D>) -> Result<()> {
        if T::DTYPE != self.dtype || image.len() != self.image_len || self.remaining == 0 {
            return Err(Error::ShapeMismatch {
                what: "image written vs the stack announced",
                image: None,
                expected: vec![self.image_len],
                found: vec![image.len()],
            });
        }
        let mut bytes = Vec::with_capacity(image.len() * self.dtype.size());
        for &x in image.iter() {
            x.put(&mut bytes);
        }
        let path = self.out.path().to_path_buf();
        self.out
            .write_all(&bytes)
            .map_err(|e| file_error(&path, FileProblem::Write { message: e.to_string() }))?;
        self.remaining -= 1;
        Ok(())
    }

    /// The finished file, to be published with other outputs by
    /// [`super::commit_all`].
    ///
    /// # Errors
    /// [`FileProblem::Write`] if fewer images were pushed than announced.
    pub fn into_output(self) -> Result<super::Output> {
        if self.remaining != 0 {
            let path = self.out.path().to_path_buf();
            return Err(file_error(
                &path,
                FileProblem::Write { message: format!("{} images missing", self.remaining) },
            ));
        }
        Ok(self.out)
    }

    /// Publish the file.
    ///
    /// # Errors
    /// As [`NpyWriter::into_output`] and [`super::Output::commit`].
    pub fn finish(self) -> Result<()> {
        self.into_output()?.commit()
    }
}

/// Write a whole array as `.npy` (element type `u8`, `f32` or `f64`),
/// atomically.
///
/// # Errors
/// As [`super::write_atomic`].
pub fn write_npy<T: WriteElement, D: Dimension>(path: impl AsRef<Path>, a: &ArrayRef<T, D>) -> Result<()> {
    npy_output(path.as_ref(), a)?.commit()
}

/// A whole array written as `.npy` into an unpublished [`super::Output`].
pub(crate) fn npy_output<T: WriteElement, D: Dimension>(
    path: &Path,
    a: &ArrayRef<T, D>,
) -> Result<super::Output> {
    let mut out = super::Output::create(path)?;
    out.write_all(&header_bytes(T::DTYPE, a.shape()))
        .map_err(|e| file_error(path, FileProblem::Write { message: e.to_string() }))?;
    let mut bytes = Vec::with_capacity(a.len() * T::DTYPE.size());
    for &x in a.iter() {
        x.put(&mut bytes);
    }
    out.write_all(&bytes).map_err(|e| file_error(path, FileProblem::Write { message: e.to_string() }))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_parse() {
        let d = parse_dict("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }      \n").unwrap();
        assert_eq!(
            d,
            Dict { descr: Some("<f4".into()), fortran_order: Some(false), shape: Some(vec![3, 4]) }
        );
        let d = parse_dict("{\"shape\":(5,),\"fortran_order\":True,\"descr\":\"|b1\"}").unwrap();
        assert_eq!(d.shape, Some(vec![5]));
        assert_eq!(
            parse_dict("{'shape': (), 'descr': 'f8', 'fortran_order': False}").unwrap().shape,
            Some(vec![])
        );
        assert_eq!(
            parse_dict("{'shape': (3L, 2L), 'descr': 'f8', 'fortran_order': False}").unwrap().shape,
            Some(vec![3, 2])
        );
        for bad in [
            "",
            "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (3,)}",
            "{'descr': '<f4', 'fortran_order': false, 'shape': (3,)}",
            "{'descr': '<f4', 'shape': (-3,)}",
            "{'descr': '<f4', 'shape': (99999999999999999999999,)}",
            "{'shaper': (3,)}",
            "{'descr': '<f4' 'shape': (3,)}",
            "{'descr': '<f4'} trailing",
        ] {
            let e = parse_dict(bad).unwrap_err();
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn descriptors() {
        assert_eq!(parse_descr("<f4"), Some((Dtype::F32, false)));
        assert_eq!(parse_descr(">i2"), Some((Dtype::I16, true)));
        assert_eq!(parse_descr("f4"), Some((Dtype::F32, cfg!(target_endian = "big"))));
        assert_eq!(parse_descr("<b1"), Some((Dtype::Bool, false)));
        assert_eq!(parse_descr("|u1"), Some((Dtype::U8, false)));
        assert_eq!(parse_descr(">u1"), Some((Dtype::U8, false)));
        assert_eq!(parse_descr("<c16"), None);
        assert_eq!(parse_descr("<U8"), None);
    }
}
